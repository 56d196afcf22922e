"""combiner=si_ls: w = r̂/ℓ, the gradient of Σ r̂ log ℓ."""

import numpy as np
import pytest
import torch

from moo_lightning.combiners import ScaleInvariantLS, SolverError


def test_hand_computed_and_flags():
    """r = (1, 3) → r̂ = (1/4, 3/4); ℓ = (0.5, 3) → w = (0.5, 0.25)."""
    res = ScaleInvariantLS()(torch.tensor([0.5, 3.0], dtype=torch.float64), None, [1.0, 3.0])
    np.testing.assert_allclose(res.weights.numpy(), [0.5, 0.25], rtol=1e-15)
    assert res.diagnostics["log_objective"] == pytest.approx(0.25 * np.log(0.5) + 0.75 * np.log(3))
    comb = ScaleInvariantLS()
    assert not comb.needs_gram and comb.uses_preference and not comb.weights_on_simplex


@pytest.mark.parametrize("m", [2, 3, 5])
def test_weights_are_the_autograd_gradient_and_ignore_loss_units(m):
    rng = np.random.default_rng(m)
    for _ in range(20):
        losses, pref = rng.uniform(1e-3, 10, m), rng.uniform(0.05, 1, m)
        ell = torch.tensor(losses, requires_grad=True)
        r = torch.tensor(pref / pref.sum())
        (grad,) = torch.autograd.grad((r * torch.log(ell)).sum(), ell)
        w = ScaleInvariantLS()(torch.tensor(losses), None, pref).weights.numpy()
        np.testing.assert_allclose(w, grad.numpy(), rtol=1e-14)
        # rescaling loss i by c_i rescales w_i by 1/c_i: the step Σ w_i ∇ℓ_i is unchanged
        c = rng.uniform(0.01, 100, m)
        wc = ScaleInvariantLS()(torch.tensor(losses * c), None, pref).weights.numpy()
        np.testing.assert_allclose(wc * c, w, rtol=1e-13)


def test_uniform_preference_is_the_nash_mtl_baseline_over_m():
    losses = np.array([0.2, 0.5, 2.0])
    w = ScaleInvariantLS()(torch.tensor(losses), None, [1, 1, 1]).weights.numpy()
    np.testing.assert_allclose(w, (1 / losses) / 3, rtol=1e-15)


def test_nonpositive_loss_is_a_solver_failure():
    with pytest.raises(SolverError, match=r"si_ls needs losses > 0"):
        ScaleInvariantLS()(torch.tensor([-0.1, 1.0]), None, [0.5, 0.5])
