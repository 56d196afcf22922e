"""Learning-rate schedules as functions of the optimizer step, built once the step budget is
known (the module calls ``factory(optimizer, total_steps)`` in ``configure_optimizers`` with
Lightning's ``estimated_stepping_batches``, so epoch and step budgets both work)."""

from __future__ import annotations

import math

import torch
from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup


def _warmup_steps(warmup: float, total_steps: float) -> int:
    ok = isinstance(warmup, int | float) and not isinstance(warmup, bool)
    if not (ok and math.isfinite(warmup) and 0 <= warmup < 1):
        raise ValueError(
            f"scheduler.warmup must be a fraction of the step budget in [0, 1). Found {warmup!r}"
        )
    if not math.isfinite(total_steps) or total_steps < 0:
        raise ValueError(
            f"the schedule needs a finite step budget (trainer.max_steps > 0 or "
            f"trainer.max_epochs > 0). Found {total_steps}"
        )
    # a budget of 0 steps builds a schedule that is never stepped (the run records no_steps)
    return round(warmup * total_steps)


def linear_warmup_decay(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup`` × budget steps, then linear decay to 0 at the last step (the
    usual fine-tuning schedule; Mosbach et al. 2021, Zhang et al. 2021)."""
    warmup_steps = _warmup_steps(warmup, total_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup_steps, max(int(total_steps), 1))


def constant(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """The optimizer's learning rate throughout (after an optional linear warmup)."""
    return get_constant_schedule_with_warmup(optimizer, _warmup_steps(warmup, total_steps))
