"""Learning-rate schedules: values, validation, and one scheduler step per optimizer step (a step
skipped for non-finite values included)."""

import pytest
import torch

from moo_lightning.combiners import LinearScalarization
from moo_lightning.module import MultiObjectiveModule
from moo_lightning.schedules import Constant, LinearWarmupDecay
from tests.helpers import quiet_trainer


def _opt(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(sched, steps):
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    return out


def test_linear_warmup_then_decay_to_zero():
    lrs = _lrs(LinearWarmupDecay(warmup=0.2)(_opt(), total_steps=10), 11)
    # 2 warmup steps (0, 0.5), peak at step 2, then linear to 0 at step 10
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0])


def test_constant_keeps_the_learning_rate():
    assert _lrs(Constant()(_opt(0.3), total_steps=5), 5) == pytest.approx([0.3] * 5)
    assert _lrs(Constant(warmup=0.5)(_opt(1.0), total_steps=4), 4) == pytest.approx(
        [0.0, 0.5, 1.0, 1.0]
    )


@pytest.mark.parametrize("warmup", [-0.1, 1.0, float("nan"), True, "0.1"])
def test_bad_warmup_is_one_clear_error(warmup):
    with pytest.raises(ValueError, match=r"scheduler.warmup must be a fraction .* \[0, 1\)"):
        LinearWarmupDecay(warmup=warmup)


def test_an_unbounded_budget_is_refused():
    with pytest.raises(ValueError, match="finite step budget"):
        LinearWarmupDecay()(_opt(), total_steps=float("inf"))


class NaNOnSecondBatch(MultiObjectiveModule):
    """Two objectives on a linear model; the loss of the second batch is NaN."""

    def __init__(self):
        super().__init__(
            LinearScalarization(),
            [0.5, 0.5],
            optimizer=lambda ps: torch.optim.AdamW(ps, lr=0.1),
            scheduler=LinearWarmupDecay(warmup=0.25),
        )
        self.net = torch.nn.Linear(3, 2)
        self.seen: list[tuple[int, float, list[torch.Tensor]]] = []

    def objectives(self, batch):
        out = self.net(batch[0])
        losses = torch.stack([out[:, 0].pow(2).mean(), (out[:, 1] - 1).pow(2).mean()])
        return losses * float("nan") if self.global_step == 1 else losses

    def on_train_batch_start(self, batch, batch_idx):
        sched = self.lr_schedulers()
        params = [p.detach().clone() for p in self.parameters()]
        self.seen.append((sched.last_epoch, sched.get_last_lr()[0], params))


def test_scheduler_steps_once_per_optimizer_step_even_when_a_step_is_skipped():
    torch.manual_seed(0)
    module = NaNOnSecondBatch()
    trainer = quiet_trainer(max_steps=4)
    data = torch.utils.data.TensorDataset(torch.randn(32, 3))
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    assert module.skipped_steps == 1
    # the budget, the schedule and the batches stay aligned: 4 batches, 4 optimizer steps
    assert trainer.global_step == 4 and module.lr_schedulers().last_epoch == 4
    assert [s[0] for s in module.seen] == [0, 1, 2, 3]
    assert [s[1] for s in module.seen] == pytest.approx([0.0, 0.1, 0.1 * 2 / 3, 0.1 / 3])
    # the skipped step (second batch) left the parameters as they were
    for a, b in zip(module.seen[1][2], module.seen[2][2]):
        assert torch.equal(a, b)
    # while the others moved them
    assert not all(torch.equal(a, b) for a, b in zip(module.seen[2][2], module.seen[3][2]))
