"""UPGrad: the dual-cone QPs (exact for m ≤ 2, NNLS beyond) and the TorchJD oracle."""

import cvxpy as cp
import numpy as np
import pytest
import torch
from torchjd.aggregation import UPGradWeighting
from torchjd.linalg import QuadprogProjector

from moo_lightning.combiners import UPGrad
from moo_lightning.combiners.upgrad import conditioned_gram, dual_cone_weights
from tests.helpers import random_gram


def call(comb, K, pref):
    m = len(pref)
    return comb(torch.ones(m, dtype=torch.float64), torch.tensor(K), pref).weights.numpy()


def torchjd_weights(K, u, reg_eps=1e-4, norm_eps=0.0):
    weighting = UPGradWeighting(
        torch.tensor(u), projector=QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps)
    )
    return weighting(torch.tensor(K)).numpy()


@pytest.mark.parametrize("m", [2, 3, 5])
def test_matches_torchjd(m):
    """Same convention as TorchJD (K/trace(K) + reg_eps·I, u = r/Σr; TorchJD's pref_vector is
    used as given, so we pass it r/Σr): both solve the same strictly convex QP exactly (quadprog
    there, closed form / NNLS here), so the weights themselves agree to round-off. Largest
    deviation measured: 1.4e-12 in w, 2.3e-12 in Kw (relative to the largest entry)."""
    rng = np.random.default_rng(10 + m)
    worst = 0.0
    for k in range(20):
        K = random_gram(rng, m, rank=m + 2 if k % 2 else int(rng.integers(1, m + 1)))
        K *= 10.0 ** rng.uniform(-3, 3)
        r = rng.uniform(0.05, 1.0, m)
        u = r / r.sum()
        ours = call(UPGrad(), K, r)
        ref = torchjd_weights(K, u)
        worst = max(worst, np.abs(ours - ref).max() / np.abs(ref).max())
        np.testing.assert_allclose(K @ ours, K @ ref, atol=1e-9 * np.abs(K @ ref).max())
    assert worst <= 1e-9, worst


def test_torchjd_norm_eps_convention():
    """TorchJD's default norm_eps = 1e-4 treats a Gram of trace < 1e-4 as zero (the weights are
    then the preference); norm_eps=1e-4 here reproduces that, the default 0 does not."""
    rng = np.random.default_rng(0)
    K = 1e-6 * random_gram(rng, 3)
    u = np.array([0.2, 0.3, 0.5])
    ref = torchjd_weights(K, u, norm_eps=1e-4)
    np.testing.assert_allclose(ref, u, atol=1e-9)  # the regularised zero matrix: v_i = u_i e_i
    np.testing.assert_allclose(call(UPGrad(norm_eps=1e-4), K, u), ref, atol=1e-9)
    assert not np.allclose(call(UPGrad(), K, u), u, atol=1e-6)


def qp_reference(A, u):
    v = cp.Variable(u.size)
    prob = cp.Problem(cp.Minimize(cp.quad_form(v, cp.psd_wrap(A))), [v >= u])
    prob.solve("CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return v.value


@pytest.mark.parametrize("m", [2, 3, 6])
def test_unregularised_projection_matches_cvxpy(m):
    """reg_eps = 0 on rank-deficient K: v is unique only up to K's null space, Kv is unique."""
    rng = np.random.default_rng(m)
    for _ in range(50):
        A = conditioned_gram(random_gram(rng, m, rank=int(rng.integers(1, m + 1))), 0.0, 0.0)
        u = np.zeros(m)
        u[int(rng.integers(m))] = rng.uniform(0.1, 1.0)
        v = dual_cone_weights(A, u)
        ref = qp_reference(A, u)
        assert np.all(v >= u - 1e-12)
        np.testing.assert_allclose(A @ v, A @ ref, atol=1e-6)


@pytest.mark.parametrize("m", [2, 3, 5])
def test_no_objective_is_worsened(m):
    """(K'w)_i ≥ 0 for every i: the direction conflicts with no objective (on K')."""
    rng = np.random.default_rng(m)
    comb = UPGrad(reg_eps=0.0)
    for _ in range(50):
        K = random_gram(rng, m, rank=int(rng.integers(1, m + 3)))
        w = call(comb, K, rng.uniform(0.1, 1.0, m))
        Kn = K / np.trace(K)
        assert np.all(Kn @ w >= -1e-9)


@pytest.mark.parametrize(
    ("K", "pref", "expected"),
    [
        ([[1.0, 0.0], [0.0, 1.0]], [0.5, 0.5], [0.5, 0.5]),  # orthogonal: nothing to project
        ([[1.0, 0.5], [0.5, 2.0]], [0.2, 0.8], [0.2, 0.8]),  # no conflict: the weighted mean
        ([[1.0, -1.0], [-1.0, 1.0]], [0.5, 0.5], [1.0, 1.0]),  # opposite: direction Gᵀw = 0
        # g2 = −g1/2, opposite: v_1 = (1/2, 1), v_2 = (1/4, 1/2), direction 0
        ([[4.0, -2.0], [-2.0, 1.0]], [0.5, 0.5], [0.75, 1.5]),
    ],
)
def test_value_table(K, pref, expected):
    w = call(UPGrad(reg_eps=0.0), np.array(K), pref)
    np.testing.assert_allclose(w, expected, atol=1e-12)
    np.testing.assert_allclose(np.array(K) @ w, np.array(K) @ expected, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reg_eps": -1e-4}, r"combiner.reg_eps must be a finite number >= 0.0. Found -0.0001"),
        ({"norm_eps": float("nan")}, r"combiner.norm_eps must be a finite number >= 0.0"),
        ({"reg_eps": "small"}, r"combiner.reg_eps must be a finite number"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UPGrad(**kwargs)


def test_flags_follow_settings():
    assert UPGrad().unique_weights and UPGrad().gram_scale_invariant
    assert not UPGrad(reg_eps=0.0).unique_weights
    assert not UPGrad(norm_eps=1e-4).gram_scale_invariant
    assert UPGrad().uses_preference and not UPGrad().weights_on_simplex
