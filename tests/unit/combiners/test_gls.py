"""combiner=gls: the weights are the gradient of the geometric mean; cross-check with TorchJD."""

import numpy as np
import pytest
import torch
from torchjd.scalarization import GeometricMean

from moo_lightning.combiners import GeometricLoss, SolverError


def test_hand_computed():
    """ℓ = (1, 4): g = 2, w = g/(2ℓ) = (1, 1/4)."""
    res = GeometricLoss()(torch.tensor([1.0, 4.0], dtype=torch.float64), None, [0.5, 0.5])
    np.testing.assert_allclose(res.weights.numpy(), [1.0, 0.25], rtol=1e-15)
    assert res.diagnostics["geometric_mean"] == pytest.approx(2.0, rel=1e-15)
    comb = GeometricLoss()
    assert not comb.needs_gram and not comb.uses_preference and not comb.weights_on_simplex


@pytest.mark.parametrize("m", [1, 2, 3, 7])
def test_matches_the_gradient_of_torchjd_geometric_mean(m):
    rng = np.random.default_rng(m)
    worst = 0.0
    for _ in range(50):
        losses = rng.uniform(1e-3, 10.0, m)
        ell = torch.tensor(losses, requires_grad=True)
        (grad,) = torch.autograd.grad(GeometricMean()(ell), ell)
        w = GeometricLoss()(torch.tensor(losses), None, np.ones(m)).weights.numpy()
        worst = max(worst, float(np.abs(w - grad.numpy()).max() / np.abs(grad.numpy()).max()))
    assert worst <= 1e-13, worst  # measured 5.7e-16 (float64 rounding)


def test_preference_is_ignored_and_loss_scales_do_not_overflow():
    a = GeometricLoss()(torch.tensor([0.3, 0.9]), None, [0.1, 0.9]).weights
    b = GeometricLoss()(torch.tensor([0.3, 0.9]), None, [0.9, 0.1]).weights
    assert torch.equal(a, b)
    for scale in (1e-300, 1e300):
        losses = torch.tensor([scale, 2 * scale, 4 * scale], dtype=torch.float64)
        w = GeometricLoss()(losses, None, [1, 1, 1]).weights.numpy()
        np.testing.assert_allclose(w, [2 / 3, 1 / 3, 1 / 6], rtol=1e-12)  # g = 2·scale


def test_zero_loss_is_a_solver_failure():
    with pytest.raises(SolverError, match=r"gls needs losses > 0. Found \[0, 1\]"):
        GeometricLoss()(torch.tensor([0.0, 1.0]), None, [0.5, 0.5])
    with pytest.warns(RuntimeWarning, match="falling back"):
        res = GeometricLoss(on_failure="ls")(torch.tensor([0.0, 1.0]), None, [0.5, 0.5])
    assert res.fallback
