"""JiGen's step schedule (``StepLR(step_size=int(0.8 · epochs), gamma=0.1)``) as a schedule of
the optimizer step: the learning rate times ``gamma`` from ``at`` × the budget on. (The core's
schedules have no step decay yet; this belongs in moo_lightning.schedules.)"""

from __future__ import annotations

import math

import torch


class StepDecay:
    """Configured with its shape, built by the module with the step budget:
    ``schedule(optimizer, total_steps)``. ``warmup``: a linear warmup over that fraction of the
    budget first (0: none; accepted so the config group's ``warmup`` key composes)."""

    def __init__(self, at: float = 0.8, gamma: float = 0.1, warmup: float = 0.0):
        for key, value, ok in (
            ("at", at, lambda v: 0 < v <= 1),
            ("gamma", gamma, lambda v: 0 < v <= 1),
            ("warmup", warmup, lambda v: 0 <= v < 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
                raise ValueError(f"scheduler.{key}: out of range. Found {value!r}")
        self.at, self.gamma, self.warmup = float(at), float(gamma), float(warmup)

    def __call__(self, optimizer: torch.optim.Optimizer, total_steps):
        if not math.isfinite(total_steps) or total_steps < 0:
            raise ValueError(f"the schedule needs a finite step budget. Found {total_steps}")
        total = max(int(total_steps), 1)
        decay_at = int(self.at * total)
        warm = round(self.warmup * total)

        def factor(step: int) -> float:
            ramp = min(1.0, (step + 1) / warm) if warm else 1.0
            return ramp * (self.gamma if step >= decay_at else 1.0)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
