"""Stacked ensembles: one vectorised step equals each member's own single-model step."""

import numpy as np
import pytest
import torch

from moo_lightning.combiners import EPO, MGDA, PNG
from moo_lightning.ensemble import EnsembleModule, spread_preferences
from moo_lightning.module import MultiObjectiveModule

N, D, B = 3, 4, 8


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, D, generator=g, dtype=torch.float64), torch.randn(
        B, 2, generator=g, dtype=torch.float64
    )


def _losses(w, b, x, y):
    """Two objectives of a linear map (D → 2): squared error of output 0, absolute of output 1."""
    out = x @ w + b
    return torch.stack([(out[:, 0] - y[:, 0]).pow(2).mean(), (out[:, 1] - y[:, 1]).abs().mean()])


class Stacked(EnsembleModule):
    def __init__(self, combiner, w0, b0, **kw):
        super().__init__(combiner, [0.5, 0.5], members=N, **kw)
        self.w = torch.nn.Parameter(w0.clone())  # (N, D, 2)
        self.b = torch.nn.Parameter(b0.clone())  # (N, 2)

    def objectives(self, batch):
        x, y = batch
        return torch.stack([_losses(self.w[n], self.b[n], x, y) for n in range(N)])


class Single(MultiObjectiveModule):
    def __init__(self, combiner, w0, b0, preference):
        super().__init__(combiner, preference)
        self.w = torch.nn.Parameter(w0.clone())
        self.b = torch.nn.Parameter(b0.clone())

    def objectives(self, batch):
        return _losses(self.w, self.b, *batch)


@pytest.mark.parametrize("make", [EPO, MGDA, PNG], ids=["epo", "mgda", "png"])
def test_stacked_step_equals_every_members_own_step(make):
    torch.manual_seed(1)
    w0, b0 = torch.randn(N, D, 2, dtype=torch.float64), torch.randn(N, 2, dtype=torch.float64)
    batch = _data()
    ens = Stacked(make(), w0, b0, preferences="spread")
    losses = ens.objectives(batch)
    results = ens.write_gradients(losses, losses.detach())
    assert not isinstance(results, str)
    for n in range(N):
        one = Single(make(), w0[n], b0[n], ens.member_preferences[n])
        own = one.objectives(batch)
        (res,) = one.write_gradients(own[None], own.detach()[None])
        torch.testing.assert_close(results[n].weights, res.weights)
        torch.testing.assert_close(ens.w.grad[n], one.w.grad)
        torch.testing.assert_close(ens.b.grad[n], one.b.grad)


def test_spread_preferences_lie_strictly_inside_the_quarter_circle():
    prefs = spread_preferences(5)
    assert prefs.shape == (5, 2) and np.allclose(prefs.sum(1), 1) and (prefs > 0).all()
    assert np.allclose(prefs, prefs[::-1, ::-1])  # symmetric about r1 = r2
    assert prefs[2, 0] == pytest.approx(0.5)


def test_criterion_gradient_reaches_only_combiners_that_use_it():
    w0, b0 = torch.zeros(N, D, 2, dtype=torch.float64), torch.zeros(N, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="combiner must be one that uses it"):
        Stacked(EPO(), w0, b0, criterion="energy")
    losses = Stacked(EPO(), w0, b0).objectives(_data())[0].detach()
    with pytest.raises(ValueError, match="combiner 'epo' does not steer by a criterion"):
        EPO()(losses, torch.eye(2, dtype=torch.float64), [0.5, 0.5], torch.ones(2))


def test_bad_member_preferences_fail_with_one_line():
    w0, b0 = torch.zeros(N, D, 2), torch.zeros(N, 2)
    with pytest.raises(ValueError, match="one row of 2 entries per member"):
        Stacked(EPO(), w0, b0, preferences=[[0.5, 0.5]])
    with pytest.raises(ValueError, match="'spread', null or one row per member"):
        Stacked(EPO(), w0, b0, preferences="even")


def test_each_member_is_clipped_on_its_own():
    w0, b0 = torch.zeros(N, D, 2, dtype=torch.float64), torch.zeros(N, 2, dtype=torch.float64)
    ens = Stacked(EPO(), w0, b0, gradient_clip_val=1.0)
    ens.w.grad = torch.zeros_like(ens.w)
    ens.b.grad = torch.zeros_like(ens.b)
    ens.w.grad[0, 0, 0] = 100.0  # member 0: norm 100; member 1: norm 0.5; member 2: zero
    ens.b.grad[1, 0] = 0.5
    ens.clip(None)
    assert float(ens.w.grad[0].norm()) == pytest.approx(1.0, rel=1e-5)
    assert float(ens.b.grad[1, 0]) == 0.5 and float(ens.w.grad[2].abs().sum()) == 0.0
