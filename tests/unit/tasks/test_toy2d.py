"""The two-dimensional toy of the CAGrad and Nash-MTL papers: the published functions at known
points, and its Pareto set (Pareto stationary; its front non-dominated)."""

import numpy as np
import torch

from moo_lightning.combiners.mgda import min_norm_weights
from moo_lightning.gradients import gram_matrix, objective_grads
from moo_lightning.tasks.toy2d import STARTS, losses_np, pareto_front, pareto_set, toy2d_losses


def test_the_published_functions_at_known_points():
    # (0, 0): both gates tanh(±y/2) are 0, so both losses are 0
    assert np.allclose(losses_np([0.0, 0.0]), 0.0)
    # deep in the lower half (tanh(4) ≈ 1): the quadratic bowls, minimum -20 at (±7, -8)
    t = np.tanh(4.0)
    assert np.allclose(losses_np([7.0, -8.0]), [t * -20.0, t * (19.6 - 20.0)])
    # in the upper half the log valley of loss 1 sits at x = -7 + 2 tanh(y) (clamped at 5e-6)
    y = 3.0
    assert np.isclose(losses_np([-7 + 2 * np.tanh(y), y])[0], np.tanh(y / 2) * (np.log(5e-6) + 6))
    assert len(STARTS) == 5


def test_the_pareto_set_is_pareto_stationary_and_its_front_non_dominated():
    pts = pareto_set(201)
    # CAGrad's figure draws the set at y = -8.3552; the exact set bends slightly with x
    assert abs(pts[100, 1] - (-8.3552)) < 1e-3 and np.all(np.abs(pts[:, 1] + 8.4) < 0.1)
    for x, y in pts[::20]:
        theta = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
        grads = objective_grads(toy2d_losses(theta), [theta])
        assert min_norm_weights(gram_matrix(grads).numpy())[1] < 1e-14  # gradients ~ 1
    _, front = pareto_front(201)
    assert len(front) == 201  # no sampled point is dominated
    assert np.all(np.diff(front[:, 0]) > 0) and np.all(np.diff(front[:, 1]) < 0)
