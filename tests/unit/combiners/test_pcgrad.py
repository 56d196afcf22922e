"""PCGrad: the projections from K, its seeded randomness, and the TorchJD oracle."""

import numpy as np
import pytest
import torch
from torchjd.aggregation import PCGradWeighting

from moo_lightning.combiners import PCGrad
from tests.helpers import random_gram


def call(comb, K, step=None):
    m = len(K)
    losses = torch.ones(m, dtype=torch.float64)
    return comb(losses, torch.tensor(K), np.ones(m), step=step).weights.numpy()


@pytest.mark.parametrize("m", [2, 3, 5])
def test_matches_torchjd_with_the_same_orders(m, monkeypatch):
    """TorchJD draws each objective's order with torch.randperm; feeding it the permutations
    our generator draws for that step makes both compute the same thing. Same scale (a sum of
    the projected gradients), so the weights agree to round-off (largest deviation measured
    0, i.e. bit-identical, relative to max |w|)."""
    rng = np.random.default_rng(40 + m)
    worst = 0.0
    for step in range(20):
        K = random_gram(rng, m, rank=m + 2 if step % 2 else int(rng.integers(1, m + 1)))
        K *= 10.0 ** rng.uniform(-3, 3)
        comb = PCGrad()
        comb.seed, comb._step = 7, step
        drawn = iter(comb.orders(m))
        monkeypatch.setattr(torch, "randperm", lambda n, it=drawn: torch.as_tensor(next(it)))
        ref = PCGradWeighting()(torch.tensor(K)).numpy()
        comb = PCGrad()
        comb.seed = 7
        ours = call(comb, K, step=step)
        worst = max(worst, np.abs(ours - ref).max() / np.abs(ref).max())
    assert worst <= 1e-12, worst


def test_two_objectives_need_no_randomness():
    rng = np.random.default_rng(0)
    for _ in range(20):
        K = random_gram(rng, 2)
        ref = PCGradWeighting()(torch.tensor(K)).numpy()
        np.testing.assert_allclose(call(PCGrad(), K), ref, rtol=1e-12)


def test_value_table():
    # g1 = (1, 0), g2 = (−1, 1): g1 loses g1ᵀg2/‖g2‖² = −1/2 along g2 -> v1 = (1, 1/2);
    # g2 loses −1 along g1 -> v2 = (1, 1); w = (2, 3/2), and g1ᵀ(Gᵀv2) = 0, g2ᵀ(Gᵀv1) = 0
    K = np.array([[1.0, -1.0], [-1.0, 2.0]])
    np.testing.assert_allclose(call(PCGrad(), K), [2.0, 1.5], atol=1e-15)
    # no conflict: the plain sum
    np.testing.assert_allclose(call(PCGrad(), np.array([[1.0, 0.2], [0.2, 1.0]])), [1.0, 1.0])


def test_same_seed_and_step_same_weights_other_steps_differ():
    rng = np.random.default_rng(3)
    G = rng.standard_normal((5, 4))
    G[1:] -= 1.2 * G[0]  # many conflicts, so the order matters
    K = G @ G.T
    a, b = PCGrad(), PCGrad()
    a.seed = b.seed = 11
    for step in (0, 5, 123456):
        np.testing.assert_array_equal(call(a, K, step), call(b, K, step))
    by_step = {tuple(call(a, K, step)) for step in range(20)}
    assert len(by_step) > 1
    other = PCGrad()
    other.seed = 12
    assert any(not np.array_equal(call(other, K, step), call(a, K, step)) for step in range(20))


def test_flags():
    comb = PCGrad()
    assert not comb.uses_preference and not comb.weights_on_simplex
    assert comb.state_dict() == {}  # the randomness is (seed, step), nothing to checkpoint
