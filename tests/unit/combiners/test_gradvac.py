"""GradVac: the vaccine from K, its EMA state and seeded orders, and the TorchJD oracle."""

import io

import numpy as np
import pytest
import torch
from torchjd.aggregation import GradVacWeighting

from moo_lightning.combiners import GradVac, PCGrad
from tests.helpers import random_gram


def call(comb, K, step=None):
    m = len(K)
    losses = torch.ones(m, dtype=torch.float64)
    return comb(losses, torch.tensor(K), np.ones(m), step=step).weights.numpy()


def torchjd_orders(orders):
    """Our permutation of 0..m-1 for objective i, as the indices into [j ≠ i] that TorchJD's
    torch.randperm(m - 1) returns."""
    out = []
    for i, perm in enumerate(orders):
        out.append(torch.tensor([j if j < i else j - 1 for j in perm if j != i]))
    return out


def sequence(rng, m, n=15):
    grams = []
    for step in range(n):
        G = rng.standard_normal((m, m + 2 if step % 3 else m))
        G[1:] -= rng.uniform(0.0, 1.5) * G[0]  # conflicts, so that corrections happen
        grams.append(G @ G.T)
    return grams


def against_torchjd(m, beta, monkeypatch, normalise):
    rng = np.random.default_rng(60 + m)
    grams = sequence(rng, m)
    ours, ref = GradVac(beta=beta), GradVacWeighting(beta=beta)
    ours.seed = 5
    worst = 0.0
    for step, K in enumerate(grams):
        probe = GradVac()
        probe.seed, probe._step = 5, step
        drawn = iter(torchjd_orders(probe.orders(m)))
        monkeypatch.setattr(torch, "randperm", lambda n, it=drawn: next(it))
        Kt = K / np.max(np.diag(K)) if normalise else K
        w_ref = ref(torch.tensor(Kt)).numpy()
        w = call(ours, K, step)
        worst = max(worst, np.abs(w - w_ref).max() / np.abs(w_ref).max())
    phi_ref = ref._phi_t.numpy()
    worst_phi = np.abs(np.array(ours.state_dict()["phi"]) - phi_ref).max()
    return worst, worst_phi


@pytest.mark.parametrize("m", [2, 3, 5])
@pytest.mark.parametrize("beta", [0.5, 0.05])
def test_matches_torchjd_over_a_sequence(m, beta, monkeypatch):
    """TorchJD's GradVacWeighting (stateful, its ``eps`` on the raw K) fed the orders our
    generator draws, over 15 steps of conflicting random Grams. On K/max diag(K), where our
    ``eps`` acts, both compute the same thing: largest deviation measured 4.4e-16 (weights,
    relative to max |w|) and 2.2e-16 (targets φ̂). On the raw K (diagonals up to about 30) only
    the placement of eps differs: 6.4e-7 (weights) and 1.9e-8 (targets); the vaccine divides by
    √(1−φ̂²), which amplifies the eps difference."""
    worst, worst_phi = against_torchjd(m, beta, monkeypatch, normalise=True)
    assert worst <= 1e-12 and worst_phi <= 1e-12, (worst, worst_phi)
    worst, worst_phi = against_torchjd(m, beta, monkeypatch, normalise=False)
    assert worst <= 1e-5 and worst_phi <= 1e-6, (worst, worst_phi)


def test_first_step_is_pcgrad():
    """With targets at 0 the vaccine lifts a negative cosine to 0: PCGrad's projection."""
    rng = np.random.default_rng(1)
    for m in (2, 3, 4):
        K = random_gram(rng, m)
        a, b = GradVac(eps=0.0), PCGrad()
        a.seed = b.seed = 3
        np.testing.assert_allclose(call(a, K, 4), call(b, K, 4), rtol=1e-12, atol=1e-12)


def test_targets_follow_the_ema_and_lift_the_cosine():
    # two fixed gradients with cosine −0.5: φ̂ ← (1−β)φ̂ + βφ with φ the cosine before the vaccine
    K = np.array([[1.0, -0.5], [-0.5, 1.0]])
    comb = GradVac(beta=0.5, eps=0.0)
    call(comb, K, 0)
    np.testing.assert_allclose(comb.state_dict()["phi"], [[0.0, -0.25], [-0.25, 0.0]])
    # a target of 0.3 lifts g1's cosine with g2 to exactly 0.3
    G = np.linalg.cholesky(K)
    comb.load_state_dict({"phi": [[0.0, 0.3], [0.3, 0.0]], "phi_before": None, "step": 0})
    w = call(comb, K, 1)
    # w = c_1 + c_2 with c_1 = e_1 + a e_2, c_2 = b e_1 + e_2; recover g̃_1 from the first row
    a = w[1] - 1.0
    g1 = G[0] + a * G[1]
    assert g1 @ G[1] / (np.linalg.norm(g1) * np.linalg.norm(G[1])) == pytest.approx(0.3)


def test_same_step_is_recomputed_not_advanced():
    rng = np.random.default_rng(2)
    grams = sequence(rng, 3, n=4)
    comb = GradVac()
    first = [call(comb, K, step) for step, K in enumerate(grams)]
    state = comb.state_dict()
    again = call(comb, grams[-1], 3)  # step 3 again: from the targets before step 3
    np.testing.assert_array_equal(again, first[-1])
    assert comb.state_dict() == state


def test_state_round_trip_is_bit_identical():
    """state_dict -> torch.save/torch.load(weights_only=True) -> a fresh combiner -> the same
    weights, bit for bit, as the uninterrupted run."""
    rng = np.random.default_rng(7)
    grams = sequence(rng, 4, n=12)
    whole = GradVac(beta=0.3)
    whole.seed = 9
    expected = [call(whole, K, step) for step, K in enumerate(grams)]
    first = GradVac(beta=0.3)
    first.seed = 9
    for step, K in enumerate(grams[:5]):
        call(first, K, step)
    buffer = io.BytesIO()
    torch.save({"combiner": first.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["combiner"]
    resumed = GradVac(beta=0.3)
    resumed.seed = 9
    resumed.load_state_dict(state)
    for step, K in enumerate(grams[5:], start=5):
        np.testing.assert_array_equal(call(resumed, K, step), expected[step])
    assert resumed.state_dict() == whole.state_dict()


def test_scale_invariant_along_a_sequence():
    rng = np.random.default_rng(4)
    grams = sequence(rng, 3, n=8)
    for scale in (1e-9, 1e9):
        a, b = GradVac(), GradVac()
        for step, K in enumerate(grams):
            np.testing.assert_allclose(
                call(a, K, step), call(b, scale * K, step), rtol=1e-9, atol=1e-12
            )


def test_long_run_of_identical_gradients_stays_finite():
    K = np.full((3, 3), 2.0)
    comb = GradVac(beta=0.5)
    for step in range(200):
        w = call(comb, K, step)
        assert np.all(np.isfinite(w))


def test_refuses_foreign_state_and_other_m():
    with pytest.raises(ValueError, match="keeps 'phi', 'phi_before' and 'step'"):
        GradVac().load_state_dict({"alpha": [1.0]})
    comb = GradVac()
    call(comb, np.eye(2), 0)
    with pytest.raises(ValueError, match="holds targets for 2 objectives; got 3"):
        call(comb, np.eye(3), 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": -0.1}, r"combiner.beta must be a finite number >= 0.0"),
        ({"beta": 1.5}, r"combiner.beta must be a finite number in \[0, 1\]"),
        ({"eps": float("nan")}, r"combiner.eps must be a finite number >= 0.0"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradVac(**kwargs)


def test_flags():
    comb = GradVac()
    assert comb.random_weights and not comb.uses_preference and not comb.weights_on_simplex
    assert comb.resumable
