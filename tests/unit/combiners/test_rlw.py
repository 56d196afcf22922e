"""combiner=rlw: softmax of a standard normal draw from (run seed, step)."""

import numpy as np
import torch

from moo_lightning.combiners import RandomLossWeighting


def _w(comb, m, step, losses=None):
    losses = torch.full((m,), 0.5, dtype=torch.float64) if losses is None else losses
    return comb(losses, None, np.ones(m), step=step).weights.numpy()


def test_weights_are_softmax_of_the_seeded_normal_draw():
    comb = RandomLossWeighting()
    comb.seed = 11
    z = np.random.default_rng([11, 5]).standard_normal(4)
    np.testing.assert_allclose(_w(comb, 4, 5), np.exp(z) / np.exp(z).sum(), rtol=1e-14)
    assert not comb.needs_gram and not comb.uses_preference and comb.weights_on_simplex


def test_same_seed_and_step_same_weights_on_every_instance_and_rank():
    a, b = RandomLossWeighting(), RandomLossWeighting()
    a.seed = b.seed = 3
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    for step in (0, 1, 17, 10**9):
        np.testing.assert_array_equal(_w(a, 3, step), _w(b, 3, step))
        # the weights ignore the losses and the preference
        np.testing.assert_array_equal(
            _w(a, 3, step), _w(b, 3, step, torch.tensor([9.0, 0.1, 3.0], dtype=torch.float64))
        )
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is not used
    assert np.abs(_w(a, 3, 1) - _w(a, 3, 2)).max() > 1e-6
    b.seed = 4
    assert np.abs(_w(a, 3, 1) - _w(b, 3, 1)).max() > 1e-6


def test_a_resumed_run_draws_what_the_uninterrupted_run_draws():
    """No state to checkpoint: a fresh instance at step k reproduces step k."""
    full = RandomLossWeighting()
    seq = [_w(full, 2, s) for s in range(10)]
    resumed = RandomLossWeighting()
    assert resumed.state_dict() == {}
    np.testing.assert_array_equal([_w(resumed, 2, s) for s in range(5, 10)], seq[5:])


def test_distribution_matches_softmax_of_standard_normals():
    comb = RandomLossWeighting()
    w = np.array([_w(comb, 3, s) for s in range(4000)])
    assert np.allclose(w.sum(1), 1) and (w > 0).all()
    # E[w_i] = 1/m by symmetry; the spread matches softmax(N(0, I)) sampled independently
    np.testing.assert_allclose(w.mean(0), 1 / 3, atol=0.01)
    z = np.random.default_rng(99).standard_normal((4000, 3))
    ref = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert abs(w.std(0).mean() - ref.std(0).mean()) < 0.01
