"""FairGrad: the Newton solve of Kw = w^{-1/α}, its scale law, and the TorchJD oracle."""

import numpy as np
import pytest
import torch
from torchjd.aggregation import FairGradWeighting

from moo_lightning.combiners import FairGrad, NashMTL, SolverError
from tests.helpers import random_gram


def run(comb, K):
    m = len(K)
    return comb(torch.ones(m, dtype=torch.float64), torch.tensor(K), np.ones(m))


def call(comb, K):
    return run(comb, K).weights.numpy()


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("m", [2, 3, 5])
def test_matches_torchjd(m, alpha):
    """TorchJD solves the same equation on the same (raw) K with scipy's least_squares (its
    default tolerances, 1e-8): largest deviation measured 2.0e-7 in Kw relative to max |Kw|.
    The official code multiplies the direction by m; TorchJD and ours do not. Gram matrices
    whose gradients hold 0 in their convex hull have no solution and are left out (ours returns
    zero weights there, tested below)."""
    rng = np.random.default_rng(70 + m)
    compared = 0
    for k in range(20):
        K = random_gram(rng, m, rank=m + 2 if k % 2 else int(rng.integers(1, m + 1)))
        K *= 10.0 ** rng.uniform(-2, 2)
        res = run(FairGrad(alpha=alpha), K)
        if res.diagnostics["stationary"]:
            continue
        compared += 1
        ours = res.weights.numpy()
        ref = FairGradWeighting(alpha=alpha)(torch.tensor(K)).numpy()
        np.testing.assert_allclose(K @ ours, K @ ref, atol=1e-6 * np.abs(K @ ours).max())
    assert compared >= 10


@pytest.mark.parametrize("alpha", [0.3, 1.0, 3.0])
def test_solves_the_fairness_equation_and_scales(alpha):
    """w_i^{1/α}(Kw)_i = 1; scaling K by s scales w by s^{-α/(1+α)}."""
    rng = np.random.default_rng(1)
    for _ in range(30):
        K = random_gram(rng, 4)
        w = call(FairGrad(alpha=alpha), K)
        np.testing.assert_allclose(w ** (1 / alpha) * (K @ w), 1.0, atol=1e-9)
        ws = call(FairGrad(alpha=alpha), 1e4 * K)
        np.testing.assert_allclose(ws, w * 1e4 ** (-alpha / (1 + alpha)), rtol=1e-8)


def test_alpha_one_is_nash_mtl_and_alpha_zero_is_the_mean():
    rng = np.random.default_rng(2)
    for _ in range(20):
        K = random_gram(rng, 3)
        np.testing.assert_allclose(
            call(FairGrad(alpha=1.0), K), call(NashMTL(max_norm=0.0), K), rtol=1e-9
        )
        np.testing.assert_allclose(call(FairGrad(alpha=0.0), K), np.full(3, 1 / 3))


@pytest.mark.parametrize("K", [[[1.0, -1.0], [-1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
def test_pareto_stationary_gives_no_step(K):
    res = run(FairGrad(alpha=2.0), np.array(K))
    np.testing.assert_array_equal(res.weights.numpy(), [0.0, 0.0])
    assert res.diagnostics["stationary"] == 1.0


def test_not_converging_is_an_error():
    with pytest.raises(SolverError, match=r"did not converge in max_iter=1"):
        run(FairGrad(alpha=2.0, max_iter=1), np.array([[1.0, -0.95], [-0.95, 3.0]]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": -1.0}, r"combiner.alpha must be a finite number >= 0.0. Found -1.0"),
        ({"alpha": float("inf")}, r"combiner.alpha must be a finite number"),
        ({"max_iter": 0}, r"combiner.max_iter must be an integer >= 1. Found 0"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FairGrad(**kwargs)
