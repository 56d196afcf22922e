"""A criterion of the parameters F(θ) (PNG's general case): PNG steers by ∇F through
one more row of the Gram matrix. On the synthetic problem, F(θ) = f(ℓ(θ)) through this path takes
the same steps as the loss-space criterion f; a criterion that depends on θ directly still gives
every objective the descent rate φ the dual promises while g(θ) > e."""

import numpy as np
import pytest
import torch

from moo_lightning.combiners import PNG, LinearScalarization, NonUniformity
from moo_lightning.combiners.criteria import ParameterCriterion
from moo_lightning.gradients import gram_matrix, objective_grads
from moo_lightning.tasks.toy import ToyModule, ToySteps, _toy_losses
from tests.helpers import quiet_trainer


class ThroughParameters(ToyModule):
    """The toy module with its PNG criterion handed over as F(θ) = non-uniformity(ℓ(θ); r)."""

    def objectives(self, batch):
        losses = super().objectives(batch)
        pref = torch.as_tensor(self.preference, dtype=losses.dtype)
        self._parameter_criterion = NonUniformity()(losses, pref)
        return losses


def _fit(module, steps=60):
    quiet_trainer().fit(module, ToySteps(steps))
    return module


@pytest.mark.parametrize("r1", [0.2, 0.7])
def test_a_criterion_of_the_losses_given_as_one_of_the_parameters_takes_the_same_steps(r1):
    def make(cls):
        return cls(
            PNG(NonUniformity()),
            [r1, 1 - r1],
            optimizer=lambda ps: torch.optim.SGD(ps, lr=0.2),
        )

    loss_space = _fit(make(ToyModule))
    parameters = _fit(make(ThroughParameters))
    a = np.array(loss_space.trajectory)
    b = np.array(parameters.trajectory)
    assert a.shape == b.shape == (60, 2)
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        parameters.theta.detach().numpy(), loss_space.theta.detach().numpy(), rtol=1e-9, atol=1e-12
    )
    assert not np.allclose(a[0], a[-1])  # it moved


def test_the_direction_keeps_the_descent_rate_the_dual_promises():
    """min ½‖v − ∇F‖² s.t. ∇ℓ_iᵀv ≥ φ: with F(θ) = ‖θ − a‖² (θ-dependent, not a function of ℓ)
    and g(θ) > e, every objective decreases at least at rate φ = α·g along v."""
    rng = np.random.default_rng(0)
    png = PNG(alpha=0.5, e=1e-6)
    for _ in range(20):
        theta = torch.tensor(rng.uniform(-1.5, 1.5, 10), requires_grad=True)
        a = torch.tensor(rng.standard_normal(10))
        losses = _toy_losses(theta)
        F = (theta - a).pow(2).sum()
        grads = objective_grads(torch.cat([losses, F.reshape(1)]), [theta])
        full = gram_matrix(grads).numpy()
        res = png(
            losses.detach(),
            torch.as_tensor(full[:2, :2]),
            [0.5, 0.5],
            ParameterCriterion(full[:2, 2], float(full[2, 2])),
        )
        assert res.criterion_weight == 1.0
        G = torch.stack([g[0] for g in grads]).numpy()  # rows ∇ℓ1, ∇ℓ2, ∇F
        v = G[2] + res.weights.numpy() @ G[:2]
        g, phi = res.diagnostics["g"], res.diagnostics["phi"]
        if res.diagnostics["constraint_active"]:
            assert phi == pytest.approx(0.5 * g)
            assert (G[:2] @ v >= phi - 1e-8 * max(1.0, abs(phi))).all()
            # complementary slackness: a positive λ_i sits on its constraint
            lam = res.weights.numpy()
            for i in range(2):
                if lam[i] > 1e-9:
                    assert G[i] @ v == pytest.approx(phi, rel=1e-6, abs=1e-9)


def test_ls_adds_a_parameter_criterion_as_a_regulariser():
    """With a combiner that does not steer by a criterion, F enters the loss with weight
    ``criterion_weight``: the step equals one backward of Σ w_i ℓ_i + β·F."""

    class Regularised(ToyModule):
        criterion_weight = 0.3

        def objectives(self, batch):
            losses = super().objectives(batch)
            self._parameter_criterion = self.theta.pow(2).sum()
            return losses

    module = _fit(
        Regularised(
            LinearScalarization(), [0.4, 0.6], optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1)
        ),
        steps=1,
    )
    theta0 = ToyModule(LinearScalarization(), 0.5).theta.detach().clone()  # the default start
    t = theta0.clone().requires_grad_(True)
    loss = (torch.tensor([0.4, 0.6], dtype=t.dtype) * _toy_losses(t)).sum() + 0.3 * t.pow(2).sum()
    loss.backward()
    np.testing.assert_allclose(
        module.theta.detach().numpy(), (theta0 - 0.1 * t.grad).numpy(), rtol=1e-12, atol=1e-14
    )
