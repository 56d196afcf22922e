"""gradient_scope='shared': the Gram matrix and the combined direction over the parameters the
shared features are computed from; the heads after the features take their own losses'
gradients, unweighted (TorchJD's ``mtl_backward`` is the oracle)."""

import pytest
import torch
import torchjd.aggregation as agg
from torchjd.autojac import jac_to_grad, mtl_backward

from moo_lightning.combiners import MGDA, LinearScalarization, TorchJD, UPGrad
from moo_lightning.ensemble import EnsembleModule
from moo_lightning.module import ConfigError, MultiObjectiveModule

D, H, B, N = 4, 6, 8, 3


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    return x, torch.randn(B, 2, generator=g, dtype=torch.float64)


def _weights(members=None):
    """Trunk (D → H) and two one-output heads, stacked along dim 0 when ``members``."""
    g = torch.Generator().manual_seed(1)
    lead = () if members is None else (members,)
    shapes = {"trunk": (D, H), "head0": (H, 1), "head1": (H, 1)}
    return {k: torch.randn(*lead, *s, generator=g, dtype=torch.float64) for k, s in shapes.items()}


def _features(trunk, x):
    return torch.tanh(x @ trunk)


def _heads(z, head0, head1, y):
    return [((z @ head0)[:, 0] - y[:, 0]).pow(2).mean(), ((z @ head1)[:, 0] - y[:, 1]).abs().mean()]


def _losses(trunk, head0, head1, x, y):
    return torch.stack(_heads(_features(trunk, x), head0, head1, y))


class TwoHeads(MultiObjectiveModule):
    def __init__(self, combiner, scope="shared", weights=None, preference=(0.3, 0.7)):
        super().__init__(combiner, list(preference), gradient_scope=scope)
        for k, v in (weights or _weights()).items():
            setattr(self, k, torch.nn.Parameter(v.clone()))

    def objectives(self, batch):
        x, y = batch
        self._representation = _features(self.trunk, x)
        return torch.stack(_heads(self._representation, self.head0, self.head1, y))


def _step(module, batch):
    losses = module.objectives(batch)
    rows = module.loss_rows(losses)
    results = module.write_gradients(rows, rows.detach())
    assert not isinstance(results, str), results
    return results


@pytest.mark.parametrize("make", [UPGrad, lambda: TorchJD("UPGrad")], ids=["upgrad", "torchjd"])
def test_shared_scope_equals_torchjd_mtl_backward_with_upgrad(make):
    batch = _batch()
    ours = TwoHeads(make(), preference=(0.5, 0.5))
    _step(ours, batch)

    w = {k: torch.nn.Parameter(v.clone()) for k, v in _weights().items()}
    x, y = batch
    features = _features(w["trunk"], x)
    losses = _heads(features, w["head0"], w["head1"], y)
    mtl_backward(losses, features=features)
    jac_to_grad([w["trunk"]], agg.UPGrad())
    for k in ("trunk", "head0", "head1"):
        torch.testing.assert_close(getattr(ours, k).grad, w[k].grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("make", [MGDA, LinearScalarization], ids=["mgda", "ls"])
def test_heads_follow_their_own_loss_and_the_gram_is_the_trunks(make):
    batch = _batch()
    module = TwoHeads(make())
    (res,) = _step(module, batch)
    assert module._shared == [True, False, False]  # the trunk; the heads are the tasks'

    ref = {k: torch.nn.Parameter(v.clone()) for k, v in _weights().items()}
    losses = _losses(ref["trunk"], ref["head0"], ref["head1"], *batch)
    g = [torch.autograd.grad(losses[i], list(ref.values()), retain_graph=True) for i in range(2)]
    trunk = torch.stack([g[0][0].reshape(-1), g[1][0].reshape(-1)])
    if make is MGDA:  # the weights solve the trunk's Gram matrix, not the whole model's
        expected = make()(losses.detach(), trunk @ trunk.T, [0.3, 0.7]).weights
        torch.testing.assert_close(res.weights, expected)
        whole = torch.stack([torch.cat([t.reshape(-1) for t in gi]) for gi in g])
        assert not torch.allclose(
            make()(losses.detach(), whole @ whole.T, [0.3, 0.7]).weights, expected
        )
    w = res.weights.to(trunk)
    torch.testing.assert_close(module.trunk.grad.reshape(-1), w @ trunk)
    torch.testing.assert_close(module.head0.grad, g[0][1])  # unweighted
    torch.testing.assert_close(module.head1.grad, g[1][2])
    assert not torch.allclose(w, torch.ones_like(w))  # so "unweighted" is a real difference


def test_a_head_both_objectives_use_takes_the_sum_of_their_gradients_as_in_torchjd():
    class OneHead(TwoHeads):
        def objectives(self, batch):
            x, y = batch
            self._representation = _features(self.trunk, x)
            return torch.stack(_heads(self._representation, self.head0, self.head0, y))

    batch = _batch()
    ours = OneHead(UPGrad(), preference=(0.5, 0.5))
    _step(ours, batch)
    w = {k: torch.nn.Parameter(v.clone()) for k, v in _weights().items()}
    features = _features(w["trunk"], batch[0])
    mtl_backward(_heads(features, w["head0"], w["head0"], batch[1]), features=features)
    jac_to_grad([w["trunk"]], agg.UPGrad())
    torch.testing.assert_close(ours.trunk.grad, w["trunk"].grad, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(ours.head0.grad, w["head0"].grad)
    # used by no objective: no gradient, as after backward() and in TorchJD
    assert ours.head1.grad is None and w["head1"].grad is None


def test_features_of_no_trainable_parameter_or_none_at_all_are_one_line():
    class Frozen(TwoHeads):
        def objectives(self, batch):
            x, y = batch
            self._representation = _features(self.trunk.detach(), x)
            return torch.stack(_heads(self._representation, self.head0, self.head1, y))

    with pytest.raises(ConfigError, match="the features depend on no trainable parameter"):
        _step(Frozen(MGDA()), _batch())

    class Hidden(TwoHeads):
        def objectives(self, batch):
            return _losses(self.trunk, self.head0, self.head1, *batch)

    with pytest.raises(ConfigError, match="'shared' needs a module that exposes its shared"):
        _step(Hidden(MGDA()), _batch())


class StackedHeads(EnsembleModule):
    def __init__(self, combiner, scope="shared"):
        super().__init__(
            combiner, [0.5, 0.5], members=N, preferences="spread", gradient_scope=scope
        )
        for k, v in _weights(N).items():
            setattr(self, k, torch.nn.Parameter(v.clone()))

    def objectives(self, batch):
        x, y = batch
        self._representation = torch.stack([_features(self.trunk[n], x) for n in range(N)])
        z = self._representation
        return torch.stack(
            [torch.stack(_heads(z[n], self.head0[n], self.head1[n], y)) for n in range(N)]
        )


def test_stacked_members_with_shared_scope_equal_each_members_own_step():
    batch = _batch()
    ens = StackedHeads(UPGrad())
    results = _step(ens, batch)
    stacked = _weights(N)
    for n in range(N):
        one = TwoHeads(
            UPGrad(),
            weights={k: v[n] for k, v in stacked.items()},
            preference=ens.member_preferences[n],
        )
        (res,) = _step(one, batch)
        torch.testing.assert_close(results[n].weights, res.weights)
        for k in ("trunk", "head0", "head1"):
            torch.testing.assert_close(getattr(ens, k).grad[n], getattr(one, k).grad)


def test_ensembles_refuse_the_inexact_scopes_in_one_line():
    with pytest.raises(ValueError, match="gradient_scope=representation supports single models"):
        StackedHeads(UPGrad(), "representation")


def test_a_non_finite_head_gradient_skips_the_step_as_under_all():
    batch = _batch()
    for scope in ("all", "shared"):
        module = TwoHeads(MGDA(), scope)
        module.head0.register_hook(lambda g: g * float("inf"))
        losses = module.objectives(batch)
        why = module.write_gradients(losses[None], losses.detach()[None])
        assert isinstance(why, str) and "non-finite gradients" in why, (scope, why)
