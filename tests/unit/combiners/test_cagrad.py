"""CAGrad: the exact 2-objective solve, the polished SOCP, its promise, and the TorchJD oracle."""

import math

import numpy as np
import pytest
import torch
from torchjd.aggregation import CAGradWeighting

from moo_lightning.combiners import CAGrad
from moo_lightning.combiners.cagrad import _inner_two
from tests.helpers import random_gram


def call(comb, K):
    m = len(K)
    return comb(torch.ones(m, dtype=torch.float64), torch.tensor(K), np.ones(m)).weights.numpy()


def inner_value(Kn, w, s):
    b = np.full(len(w), 1.0 / len(w))
    return w @ Kn @ b + s * math.sqrt(max(w @ Kn @ w, 0.0))


@pytest.mark.parametrize("m", [2, 3, 5])
def test_matches_torchjd(m):
    """TorchJD does not rescale: compare with rescale=0 (the default rescale=1 divides every
    weight by 1 + c² = 1.16). TorchJD solves the inner SOCP with Clarabel's default tolerances,
    which place w* only to about √gap, so the directions agree to a few 1e-4: largest deviation
    measured 3.1e-4 in Kw relative to max |Kw| (m = 5), 1.1e-5 for m = 2. That the gap is
    TorchJD's: our inner objective is never above the one of TorchJD's w*."""
    rng = np.random.default_rng(20 + m)
    worst = 0.0
    for k in range(20):
        K = random_gram(rng, m, rank=m + 2 if k % 2 else int(rng.integers(1, m + 1)))
        K *= 10.0 ** rng.uniform(0, 3)  # TorchJD zeroes a Gram of trace < its norm_eps 1e-4
        ours = call(CAGrad(rescale=0), K)
        ref = CAGradWeighting(c=0.4)(torch.tensor(K)).numpy()
        assert np.abs(ref).max() > 0  # TorchJD's "on the Pareto front" zero is not hit here
        worst = max(worst, np.abs(K @ (ours - ref)).max() / np.abs(K @ ref).max())
        Kn, b = K / np.trace(K), np.full(m, 1.0 / m)
        s = 0.4 * math.sqrt(b @ Kn @ b)
        w_ours, w_ref = ours - b, ref - b
        theirs = inner_value(Kn, w_ref / w_ref.sum(), s)  # its w* is feasible only to ~1e-11
        assert inner_value(Kn, w_ours / w_ours.sum(), s) <= theirs + 1e-10
        np.testing.assert_allclose(call(CAGrad(), K), ours / 1.16, rtol=1e-12)
    assert worst <= 1e-3, worst


def test_two_objective_closed_form_is_optimal():
    """The closed form is never above the best point of a 2001-point grid (1000 Grams)."""
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 1.0, 2001)
    W = np.stack([t, 1 - t], 1)
    for _ in range(1000):
        Kn = random_gram(rng, 2, rank=int(rng.integers(1, 4)))
        Kn /= np.trace(Kn)
        b = np.full(2, 0.5)
        s = 0.4 * math.sqrt(b @ Kn @ b)
        w = _inner_two(Kn @ b, Kn, s)
        best = inner_value(Kn, w, s)
        grid = W @ Kn @ b + s * np.sqrt(np.clip(np.einsum("ij,jk,ik->i", W, Kn, W), 0, None))
        assert best <= grid.min() + 1e-12


@pytest.mark.parametrize("m", [2, 3, 5])
def test_maximises_the_worst_improvement_in_the_ball(m):
    """d = Gᵀw (rescale 0) lies in the ball ‖d − g₀‖ ≤ c‖g₀‖ and no point of the ball improves
    the worst objective more: min_i g_iᵀd ≥ min_i g_iᵀd' for random d' in the ball."""
    rng = np.random.default_rng(m)
    c = 0.4
    for _ in range(30):
        G = rng.standard_normal((m, m + 3))
        K = G @ G.T
        d = G.T @ call(CAGrad(c=c, rescale=0), K)
        g0 = G.mean(0)
        radius = c * np.linalg.norm(g0)
        assert np.linalg.norm(d - g0) <= radius * (1 + 1e-9)
        z = rng.standard_normal((500, G.shape[1]))
        z *= (
            radius
            * rng.uniform(0, 1, (500, 1)) ** (1 / G.shape[1])
            / np.linalg.norm(z, axis=1)[:, None]
        )
        others = (g0 + z) @ G.T
        assert (G @ d).min() >= others.min(1).max() - 1e-9 * np.abs(G @ d).max()


def test_c_zero_is_the_mean_and_rescale_modes():
    K = np.array([[1.0, -0.5, 0.0], [-0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
    np.testing.assert_allclose(call(CAGrad(c=0.0, rescale=0), K), np.full(3, 1 / 3))
    base = call(CAGrad(c=0.5, rescale=0), K)
    np.testing.assert_allclose(call(CAGrad(c=0.5, rescale=1), K), base / 1.25, rtol=1e-12)
    np.testing.assert_allclose(call(CAGrad(c=0.5, rescale=2), K), base / 1.5, rtol=1e-12)


def test_pareto_stationary_keeps_the_mean():
    """Opposite gradients: g_w = 0 has no direction, only g₀ (here also 0) is kept."""
    w = call(CAGrad(rescale=0), np.array([[1.0, -1.0], [-1.0, 1.0]]))
    np.testing.assert_allclose(w, [0.5, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"c": -0.1}, r"combiner.c must be a finite number >= 0.0. Found -0.1"),
        ({"rescale": 3}, r"combiner.rescale must be 0 \(none\), 1 .* Found 3"),
        ({"rescale": True}, r"combiner.rescale must be 0"),
        ({"cvxpy_solver": "GLPK"}, r"combiner.cvxpy_solver 'GLPK' is not installed"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CAGrad(**kwargs)
