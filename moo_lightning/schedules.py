"""Learning-rate schedules as functions of the optimizer step. A schedule is configured with its
shape (validated at once) and built once the step budget is known: the module calls
``schedule(optimizer, total_steps)`` in ``configure_optimizers`` with Lightning's
``estimated_stepping_batches``, so step and epoch budgets both work."""

from __future__ import annotations

import math

import torch
from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup


def _check_warmup(warmup) -> float:
    ok = isinstance(warmup, int | float) and not isinstance(warmup, bool)
    if not (ok and math.isfinite(warmup) and 0 <= warmup < 1):
        raise ValueError(
            f"scheduler.warmup must be a fraction of the step budget in [0, 1). Found {warmup!r}"
        )
    return float(warmup)


def _budget(total_steps) -> int:
    if not math.isfinite(total_steps) or total_steps < 0:
        raise ValueError(
            "the schedule needs a finite step budget (trainer.max_steps > 0 or "
            f"trainer.max_epochs > 0). Found {total_steps}"
        )
    # a budget of 0 steps builds a schedule that is never stepped (the run records no_steps)
    return max(int(total_steps), 1)


class _WarmupSchedule:
    """A schedule shape with a linear warmup over ``warmup`` × the budget; subclasses build the
    scheduler from (optimizer, warmup steps, budget)."""

    default_warmup = 0.0

    def __init__(self, warmup: float | None = None):
        self.warmup = _check_warmup(self.default_warmup if warmup is None else warmup)

    def __call__(
        self, optimizer: torch.optim.Optimizer, total_steps
    ) -> torch.optim.lr_scheduler.LRScheduler:
        total = _budget(total_steps)
        return self._build(optimizer, round(self.warmup * total), total)

    def _build(self, optimizer, warmup_steps: int, total: int):
        raise NotImplementedError


class LinearWarmupDecay(_WarmupSchedule):
    """Linear warmup over ``warmup`` × budget steps (default 10%), then linear decay to 0 at the
    last step (the usual fine-tuning schedule; Mosbach et al. 2021, Zhang et al. 2021)."""

    default_warmup = 0.1

    def _build(self, optimizer, warmup_steps, total):
        return get_linear_schedule_with_warmup(optimizer, warmup_steps, total)


class Constant(_WarmupSchedule):
    """The optimizer's learning rate throughout (after an optional linear warmup)."""

    def _build(self, optimizer, warmup_steps, total):
        return get_constant_schedule_with_warmup(optimizer, warmup_steps)
