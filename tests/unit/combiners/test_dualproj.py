"""DualProj: one dual-cone QP of the weighted mean, against the TorchJD oracle."""

import numpy as np
import pytest
import torch
from torchjd.aggregation import DualProjWeighting
from torchjd.linalg import QuadprogProjector

from moo_lightning.combiners import DualProj, UPGrad
from tests.helpers import random_gram


def call(comb, K, pref):
    m = len(pref)
    return comb(torch.ones(m, dtype=torch.float64), torch.tensor(K), pref).weights.numpy()


@pytest.mark.parametrize("m", [2, 3, 5])
def test_matches_torchjd(m):
    """Same convention as TorchJD (K/trace(K) + reg_eps·I, u = r/Σr passed as its pref_vector):
    the same strictly convex QP solved exactly on both sides, so the weights agree to round-off.
    Largest deviation measured: 1.5e-12 in w, 1.2e-12 in Kw (relative to the largest entry)."""
    rng = np.random.default_rng(10 + m)
    worst = 0.0
    for k in range(20):
        K = random_gram(rng, m, rank=m + 2 if k % 2 else int(rng.integers(1, m + 1)))
        K *= 10.0 ** rng.uniform(-3, 3)
        r = rng.uniform(0.05, 1.0, m)
        u = r / r.sum()
        projector = QuadprogProjector(norm_eps=0.0, reg_eps=1e-4)
        ref = DualProjWeighting(torch.tensor(u), projector=projector)(torch.tensor(K)).numpy()
        ours = call(DualProj(), K, r)
        worst = max(worst, np.abs(ours - ref).max() / np.abs(ref).max())
        np.testing.assert_allclose(K @ ours, K @ ref, atol=1e-9 * np.abs(K @ ref).max())
    assert worst <= 1e-9, worst


@pytest.mark.parametrize("m", [2, 3, 5])
def test_projection_properties(m):
    """w ≥ u, (K'w)_i ≥ 0, and complementary slackness (w_i − u_i)(K'w)_i = 0."""
    rng = np.random.default_rng(m)
    for _ in range(50):
        K = random_gram(rng, m, rank=int(rng.integers(1, m + 3)))
        r = rng.uniform(0.1, 1.0, m)
        u = r / r.sum()
        w = call(DualProj(reg_eps=0.0), K, r)
        Kw = K @ w / np.trace(K)
        assert np.all(w >= u - 1e-12)
        assert np.all(Kw >= -1e-9)
        assert np.all(np.abs((w - u) * Kw) <= 1e-9)


def test_no_conflict_gives_the_weighted_mean():
    """Orthogonal or aligned gradients: nothing to project, DualProj = UPGrad = weighted mean."""
    for K in ([[1.0, 0.0], [0.0, 3.0]], [[2.0, 1.0], [1.0, 1.0]]):
        K = np.array(K)
        np.testing.assert_allclose(call(DualProj(), K, [0.3, 0.7]), [0.3, 0.7], atol=1e-12)
        np.testing.assert_allclose(call(UPGrad(), K, [0.3, 0.7]), [0.3, 0.7], atol=1e-12)


def test_value_table_conflict():
    # u = (1/2, 1/2), Ku = (−1/4, 5/4): the mean conflicts with objective 1, so w_1 is lifted
    # until (Kw)_1 = 0: w = (3/4, 1/2), Kw = (0, 7/8)
    K = np.array([[1.0, -1.5], [-1.5, 4.0]])
    w = call(DualProj(reg_eps=0.0), K, [0.5, 0.5])
    np.testing.assert_allclose(w, [0.75, 0.5], atol=1e-12)
    np.testing.assert_allclose(K @ w, [0.0, 0.875], atol=1e-12)


def test_bad_settings():
    with pytest.raises(ValueError, match=r"combiner.reg_eps must be a finite number >= 0.0"):
        DualProj(reg_eps=-1.0)
    with pytest.raises(ValueError, match=r"combiner.norm_eps must be a finite number >= 0.0"):
        DualProj(norm_eps=float("inf"))
