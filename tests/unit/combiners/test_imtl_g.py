"""IMTL-G: the closed form, its impartiality, and the TorchJD oracle."""

import numpy as np
import pytest
import torch
from torchjd.aggregation import IMTLGWeighting

from moo_lightning.combiners import IMTLG
from tests.helpers import random_gram


def run(comb, K):
    m = len(K)
    return comb(torch.ones(m, dtype=torch.float64), torch.tensor(K), np.ones(m))


def call(comb, K):
    return run(comb, K).weights.numpy()


@pytest.mark.parametrize("m", [2, 3, 5])
def test_matches_torchjd(m):
    """Same formula and scale as TorchJD (pinv, Σw = 1). Full rank: the weights agree to
    round-off (largest deviation measured 3.1e-14 relative to max |w|). Rank-deficient Grams:
    the pseudo-inverses cut off different noise eigenvalues (ours below 1e-10·λ_max, torch's
    below m·eps·σ_max), so only the effect Kw is compared (largest deviation 1.9e-13 relative
    to max |Kw|)."""
    rng = np.random.default_rng(30 + m)
    worst_w = worst_kw = 0.0
    for k in range(20):
        full = k % 2 == 1
        K = random_gram(rng, m, rank=m + 2 if full else int(rng.integers(1, m + 1)))
        K *= 10.0 ** rng.uniform(-3, 3)
        ours = call(IMTLG(), K)
        ref = IMTLGWeighting()(torch.tensor(K)).numpy()
        worst_kw = max(worst_kw, np.abs(K @ (ours - ref)).max() / np.abs(K @ ref).max())
        if full:
            worst_w = max(worst_w, np.abs(ours - ref).max() / np.abs(ref).max())
    assert worst_w <= 1e-10 and worst_kw <= 1e-9, (worst_w, worst_kw)


@pytest.mark.parametrize("m", [2, 3, 5])
def test_equal_projections_on_unit_gradients(m):
    """g_iᵀd/‖g_i‖ is the same for every i, and Σw = 1 (independent gradients)."""
    rng = np.random.default_rng(m)
    for _ in range(50):
        K = random_gram(rng, m) * 10.0 ** rng.uniform(-6, 6)
        w = call(IMTLG(), K)
        proj = K @ w / np.sqrt(np.diag(K))
        np.testing.assert_allclose(proj, proj.mean(), rtol=1e-8)
        assert abs(w.sum() - 1) < 1e-10


def test_value_table():
    # norms 1 and 2, orthogonal: v = (1, 1/2), w = (2/3, 1/3), both projections 2/3
    np.testing.assert_allclose(call(IMTLG(), np.diag([1.0, 4.0])), [2 / 3, 1 / 3], atol=1e-14)
    # for two objectives d is the bisector of the unit gradients: w ∝ (1/‖g₁‖, 1/‖g₂‖) > 0
    K = np.array([[1.0, -0.9], [-0.9, 4.0]])
    np.testing.assert_allclose(call(IMTLG(), K), [2 / 3, 1 / 3], atol=1e-14)


def test_negative_weights_occur_from_three_objectives():
    """g₃ close to g₁ + g₂: equal projections need a negative weight on one of them."""
    G = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.2]])
    K = G @ G.T
    w = call(IMTLG(), K)
    assert w.min() < 0
    proj = K @ w / np.sqrt(np.diag(K))
    np.testing.assert_allclose(proj, proj[0], rtol=1e-10)


@pytest.mark.parametrize("K", [[[1.0, -1.0], [-1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
def test_no_impartial_direction_gives_zero(K):
    res = run(IMTLG(), np.array(K))
    np.testing.assert_array_equal(res.weights.numpy(), [0.0, 0.0])
    assert res.diagnostics["degenerate"] == 1.0


@pytest.mark.parametrize(
    ("rcond", "match"),
    [(-1.0, r"combiner.rcond must be a finite number >= 0.0"), (1.0, r"must be < 1")],
)
def test_bad_settings(rcond, match):
    with pytest.raises(ValueError, match=match):
        IMTLG(rcond=rcond)


def _recorded_expression(K, rcond=1e-10):
    """IMTL-G's v = K⁺·√diag(K) as every recorded run computed it (the m = 2 arithmetic)."""
    vals, vecs = np.linalg.eigh(K)
    top = float(vals.max())
    keep = vals > rcond * top if top > 0.0 else np.zeros(len(K), dtype=bool)
    norms = np.sqrt(np.clip(np.diag(K), 0.0, None))
    v = vecs[:, keep] @ ((vecs[:, keep].T @ norms) / vals[keep])
    return v, int(keep.sum())


def test_two_objectives_keep_the_recorded_floats():
    """m = 2 near (anti)parallel gradients (K ill-conditioned, v large): the weights are bit for
    bit those of the recorded expression; the last bits decided the toy run's end point."""
    rng = np.random.default_rng(7)
    for k in range(300):
        g = rng.standard_normal(4)
        sign = 1.0 if k % 2 else -1.0
        h = sign * g * rng.uniform(0.1, 10) + rng.standard_normal(4) * 10 ** rng.uniform(-12, -2)
        G = np.stack([g, h]) * 10 ** rng.uniform(-4, 4)
        K = G @ G.T
        res = run(IMTLG(), K)
        v, rank = _recorded_expression(K)
        total = float(v.sum())
        expected = np.zeros(2) if not abs(total) > 1e-9 * np.abs(v).sum() else v / total
        np.testing.assert_array_equal(res.weights.numpy(), expected)
        assert res.diagnostics["rank"] == rank


@pytest.mark.parametrize("m", [3, 5, 10])
@pytest.mark.parametrize("rank", ["full", "deficient"])
def test_more_objectives_match_the_eigh_pseudo_inverse(m, rank):
    """m > 2 solves through LAPACK's dsyevd directly: the same v as np.linalg.eigh's expression
    to round-off, with the same eigenvalue cut-off (the rank diagnostic)."""
    rng = np.random.default_rng(m)
    for _ in range(30):
        r = m + 2 if rank == "full" else int(rng.integers(1, m))
        K = random_gram(rng, m, rank=r) * 10.0 ** rng.uniform(-3, 3)
        res = run(IMTLG(), K)
        v, kept = _recorded_expression(K)
        assert res.diagnostics["rank"] == kept == min(r, m)
        ref = v / v.sum()
        w = res.weights.numpy()
        assert np.abs(K @ (w - ref)).max() <= 1e-10 * np.abs(K @ ref).max()
        if rank == "full":
            assert np.abs(w - ref).max() <= 1e-10 * np.abs(ref).max()
