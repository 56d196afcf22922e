"""The module's step: the oracle for the gradient plumbing (LS through the Gram path = a plain
weighted backward), the gradient scope, and skipped non-finite steps."""

import numpy as np
import pytest
import torch

from moo_lightning.combiners import LinearScalarization
from moo_lightning.gradients import gram_matrix, objective_grads, write_direction
from moo_lightning.module import ConfigError, GradientScope, MultiObjectiveModule
from tests.helpers import quiet_trainer


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _losses(net, x):
    out = net(x)
    return torch.stack(
        [out[:, 0].pow(2).mean(), (out[:, 1] - 1).abs().mean(), out[:, 2].exp().mean()]
    )


def test_gram_path_equals_weighted_backward():
    x = torch.randn(16, 5)
    w = torch.tensor([0.2, 0.5, 0.3])
    net = _net()
    (w * _losses(net, x)).sum().backward()
    expected = [p.grad.clone() for p in net.parameters()]

    net = _net()
    params = list(net.parameters())
    grads = objective_grads(_losses(net, x), params)
    K = gram_matrix(grads)
    flat = torch.stack([torch.cat([g.reshape(-1) for g in gi]) for gi in grads]).double()
    torch.testing.assert_close(K, flat @ flat.T)
    write_direction(grads, w, params)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, e)


class GramLS(LinearScalarization):
    needs_gram = True  # force the per-objective-gradient path


class Tiny(MultiObjectiveModule):
    def __init__(self, combiner):
        super().__init__(
            combiner, [0.2, 0.5, 0.3], optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1)
        )
        self.net = _net()

    def objectives(self, batch):
        return _losses(self.net, batch[0])


def _train(combiner):
    torch.manual_seed(1)
    data = torch.utils.data.TensorDataset(torch.randn(64, 5))
    module = Tiny(combiner)
    trainer = quiet_trainer()
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=16))
    return [p.detach().clone() for p in module.parameters()]


def test_module_steps_identical_for_both_paths():
    for a, b in zip(_train(LinearScalarization()), _train(GramLS())):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


class AlwaysNaN(Tiny):
    def objectives(self, batch):
        return super().objectives(batch) * float("nan")


def test_nonfinite_steps_are_skipped_counted_and_stop_the_run():
    import pytest

    from moo_lightning.module import NonFiniteError

    module = AlwaysNaN(LinearScalarization())
    module.max_bad_steps = 3
    before = [p.detach().clone() for p in module.parameters()]
    trainer = quiet_trainer()
    data = torch.utils.data.TensorDataset(torch.randn(160, 5))
    with pytest.raises(NonFiniteError, match="3 consecutive steps with non-finite losses"):
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=16))
    assert module.skipped_steps == 3
    for a, b in zip(before, module.parameters()):
        assert np.array_equal(a.numpy(), b.detach().numpy())  # no step was taken


def test_gradient_scope_is_parsed_once_and_resolved_against_the_parameters():
    assert GradientScope.parse("all").exact
    assert GradientScope.parse("representation").kind == "representation"
    scope = GradientScope.parse(["2."])  # the last Linear of _net()
    assert scope.kind == "parameters" and scope.parameters == ()
    net = _net()
    resolved = scope.resolve(net)
    assert [p.shape for p in resolved.parameters] == [torch.Size([3, 8]), torch.Size([3])]
    with pytest.raises(ValueError, match="must be 'all', 'shared', 'representation'"):
        GradientScope.parse("everything")
    with pytest.raises(ValueError, match="an empty list"):
        GradientScope.parse([])
    with pytest.raises(ConfigError, match="matches no trainable parameter; names start with: 0, 2"):
        GradientScope.parse(["head"]).resolve(net)


class ThreeObjectives(MultiObjectiveModule):
    """Tiny's three objectives at train.yaml's default preference, which has two entries."""

    def __init__(self, combiner, num_objectives=None):
        super().__init__(
            combiner,
            [0.1, 0.9],
            optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
            num_objectives=num_objectives,
        )
        self.net = _net()

    def objectives(self, batch):
        return _losses(self.net, batch[0])


@pytest.mark.parametrize("num_objectives", [None, 3])
def test_a_combiner_that_ignores_the_preference_trains_three_objectives_at_a_two_entry_one(
    num_objectives,
):
    from moo_lightning.combiners import EPO, MGDA

    module = ThreeObjectives(MGDA(), num_objectives)
    before = [p.detach().clone() for p in module.parameters()]
    data = torch.utils.data.TensorDataset(torch.randn(32, 5))
    quiet_trainer(max_steps=2).fit(module, torch.utils.data.DataLoader(data, batch_size=16))
    assert module.skipped_steps == 0 and module.recorded_preference is None
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))
    # a combiner that uses the preference still needs one entry per objective, and says where
    match = r"one entry per objective \(3\). Found 2 entries: \[0.1, 0.9\]; set preference=\["
    with pytest.raises(ValueError, match=match):
        ThreeObjectives(EPO(), 3)
    # a malformed value is refused even by a combiner that does not read it
    for bad in (-1, [0.5, -0.5], [0.2, float("nan")]):
        with pytest.raises(ValueError, match="preference"):
            MultiObjectiveModule(MGDA(), bad, num_objectives=3)
    # one number is a pair only for two objectives: for one objective, a weight as with LS
    for comb in (MGDA(), LinearScalarization()):
        assert MultiObjectiveModule(comb, 1.0, num_objectives=1).preference.tolist() == [1.0]


def test_a_loss_matrix_is_refused_by_the_single_model_step():
    module = Tiny(LinearScalarization())
    with pytest.raises(ValueError, match="EnsembleModule"):
        module.multi_objective_step(torch.ones(2, 3))


def test_a_skipped_step_leaves_the_combiners_state_as_it_was():
    """The combine runs before the step is found non-finite (here: the combiner's weights); the
    state it updated on the way (GradVac's targets and step) is put back."""
    import copy

    from moo_lightning.combiners.gradvac import GradVac

    class NaNWeightsOnce(GradVac):
        calls = 0

        def _combine(self, losses, gram, preference):
            w, diag = super()._combine(losses, gram, preference)
            NaNWeightsOnce.calls += 1
            return (w * float("nan"), diag) if NaNWeightsOnce.calls == 3 else (w, diag)

    states = []

    class Recording(Tiny):
        def on_train_batch_start(self, batch, batch_idx):
            states.append(copy.deepcopy(self.row_combiners.state_dict()))

    torch.manual_seed(1)
    module = Recording(NaNWeightsOnce())
    data = torch.utils.data.TensorDataset(torch.randn(64, 5))
    quiet_trainer().fit(module, torch.utils.data.DataLoader(data, batch_size=16))
    assert module.skipped_steps == 1
    assert states[3] == states[2]  # the third step (index 2) was skipped: nothing changed
    assert states[2] != states[1]  # an ordinary step does change it


def test_uw_log_variances_get_no_weight_decay_and_no_clipping():
    """UW's log-variances step with the model's optimizer, but a weight decay would pull them to
    0 and the direction's clipping would shrink their own gradient: neither applies to them."""
    from moo_lightning.combiners import UncertaintyWeighting

    class WithDecay(Tiny):
        def __init__(self, combiner):
            super().__init__(combiner)
            self.optimizer_factory = lambda ps: torch.optim.AdamW(ps, lr=0.1, weight_decay=0.5)
            self.gradient_clip_val = 1e-6

    seen = {}

    class Spy(WithDecay):
        def _optimizer_step(self, opt):
            (s,) = self.row_combiners.parameters()
            seen["s_grad"] = s.grad.clone()
            seen["model_norm"] = float(
                torch.sqrt(sum((p.grad**2).sum() for p in self.net.parameters()))
            )
            seen["groups"] = [g["weight_decay"] for g in opt.param_groups]
            super()._optimizer_step(opt)

    torch.manual_seed(1)
    module = Spy(UncertaintyWeighting(num_objectives=3))
    data = torch.utils.data.TensorDataset(torch.randn(16, 5))
    quiet_trainer().fit(module, torch.utils.data.DataLoader(data, batch_size=16))
    assert seen["groups"] == [0.5, 0.0]
    assert seen["model_norm"] <= 1.01e-6  # the model's direction is clipped
    # s.grad_i = 1 − ℓ_i e^{−s_i} at s = 0: untouched by the clipping (|s.grad| is O(1))
    assert float(seen["s_grad"].abs().max()) > 1e-3


def test_a_problem_without_data_takes_one_empty_batch_per_step():
    from moo_lightning.batches import StepBatches

    assert len(StepBatches(steps=5).train_dataloader()) == 5
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="steps must be an integer >= 1 or None"):
            StepBatches(steps=bad)
