"""What one optimizer step asks of its combiners, for one model or N stacked members alike.

A step combines a loss matrix (N, m) — N = 1 for a single model — row by row. This module holds
the parts of that which are not gradients:

- :class:`CombinerSchedule`: which combiner steers at a given step (a declared warm-up, such as
  the LS warm-up of the PNG paper's MGD baseline, then the main combiner);
- :class:`RowCombiners`: one combiner per row, with its own state when the combiner keeps state
  (a stateless combiner is shared by every row), the run seed, the global step, the combiners'
  learnable parameters and their checkpointed state;
- :func:`combine_rows`: every row's weights from the all-reduced losses, Gram matrices,
  preferences and coupling gradients.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from lightning.pytorch.utilities import rank_zero_warn

from moo_lightning.combiners.base import Combined, Combiner


def keeps_state(combiner: Combiner) -> bool:
    """Whether ``combiner`` keeps state between steps (its class overrides ``state_dict``), has
    learnable weights, or updates after the step: such a combiner needs one copy per row."""
    own_state = type(combiner).state_dict is not Combiner.state_dict
    # a method with hidden state (a wrapped TorchJD weighting) and one that draws random
    # weights need their own copy too: members must not share a history or a draw
    return (
        own_state
        or bool(combiner.parameters())
        or combiner.needs_losses_after_step
        or not combiner.resumable
        or combiner.random_weights
    )


class RowCombiners:
    """The main combiner of each of ``rows`` rows: the given combiner for row 0 and deep copies for
    the others when it keeps state (so members never share a loss history or a warm start)."""

    def __init__(self, combiner: Combiner, rows: int):
        self.template = combiner
        if keeps_state(combiner):
            self.rows = [combiner] + [copy.deepcopy(combiner) for _ in range(rows - 1)]
            for n, c in enumerate(self.rows):
                c.row = n  # member n draws its own random numbers (row 0: as a single model)
        else:
            self.rows = [combiner] * rows

    def distinct(self) -> list[Combiner]:
        seen, out = set(), []
        for c in self.rows:
            if id(c) not in seen:
                seen.add(id(c))
                out.append(c)
        return out

    def parameters(self) -> list[torch.nn.Parameter]:
        """The combiners' learnable weights (UW), handed to the optimizer by the module."""
        return [p for c in self.distinct() for p in c.parameters()]

    def parameter_lr(self) -> float | None:
        """The learning rate of the combiners' learnable weights (None: the optimizer's)."""
        return self.template.parameter_lr

    def set_seed(self, seed: int) -> None:
        for c in self.distinct():
            c.seed = int(seed)

    def state_dict(self) -> list[dict] | None:
        """Each distinct combiner's state (None when none keeps any): checkpointed."""
        if not keeps_state(self.template):
            return None
        return [c.state_dict() for c in self.distinct()]

    def load_state_dict(self, state: list[dict] | None) -> None:
        combiners = self.distinct()
        if state is None:
            if keeps_state(self.template):
                raise ValueError(
                    f"the checkpoint holds no state for combiner {self.template.name!r}, which "
                    "keeps state between steps: it was made with another combiner"
                )
            return
        if len(state) != len(combiners):
            raise ValueError(
                f"the checkpoint holds state for {len(state)} combiner(s), this run has "
                f"{len(combiners)}: it was made with other settings"
            )
        for c, s in zip(combiners, state):
            c.load_state_dict(s)

    @property
    def resumable(self) -> bool:
        return all(c.resumable for c in self.distinct())


class CombinerSchedule:
    """Which combiner steers at each step: ``warmup`` for the first ``warmup_steps`` optimizer
    steps (none by default), then the main combiner of each row."""

    def __init__(self, warmup: Combiner | None = None, warmup_steps: int = 0):
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0. Found {warmup_steps}")
        self.warmup = warmup
        self.warmup_steps = int(warmup_steps) if warmup is not None else 0

    def combiners(self, step: int, main: RowCombiners) -> list[Combiner]:
        if step < self.warmup_steps:
            return [self.warmup] * len(main.rows)
        return list(main.rows)


def combine_rows(
    combiners: Sequence[Combiner],
    losses: torch.Tensor,
    grams: torch.Tensor | None,
    preferences,
    coupling: torch.Tensor | None,
    step: int,
) -> list[Combined]:
    """Row n's weights from its combiner, losses (m,), Gram (m, m) or None, preference (m,) and
    coupling gradient ∂F/∂ℓ_n (PNG in a coupled ensemble) or None."""
    return [
        c(
            losses[n],
            None if grams is None else grams[n],
            preferences[n],
            None if coupling is None else coupling[n],
            step=step,
        )
        for n, c in enumerate(combiners)
    ]


def scale_dependence(combiner: Combiner, scope) -> str | None:
    """Why ``combiner`` under the gradient ``scope`` (the module's GradientScope) takes another
    step than the published method, or None when it does not: a combiner whose weights depend on
    the Gram matrix's scale (``gram_scale_invariant`` False: Nash-MTL's α ~ 1/√scale and its
    max_norm, FairGrad's w ~ scale^{−α/(1+α)}, PNG's threshold e > 0, UPGrad's and DualProj's
    norm_eps > 0), with a scope other than ``all``: its weights are then computed from a Gram of
    other gradients (the shared features', or a subset of the parameters'), whose scale differs
    from that of the parameter gradients the weighted backward combines with them."""
    if scope.per_objective or not combiner.needs_gram or combiner.gram_scale_invariant:
        return None  # all, shared: the Gram of the very gradients the weights combine
    if scope.kind == "representation":
        where = "module.gradient_scope=representation (the Gram of the shared features' gradients"
    else:
        where = f"module.gradient_scope={scope.label} (the Gram of those parameters' gradients"
    return (
        f"combiner {combiner.name!r} with {where}): its weights depend on the Gram matrix's "
        "scale, not only on its shape, and this Gram's scale differs from that of the "
        "parameter gradients the weighted backward combines, so the step's length (Nash-MTL's "
        "max_norm, FairGrad's weights) and any absolute threshold (PNG's e, norm_eps) are "
        "measured in that Gram's units, not the published method's; "
        "module.gradient_scope=all is exact"
    )


def warn_scale_dependence(combiner: Combiner, scope) -> None:
    """Warn on rank 0 when :func:`scale_dependence` finds a mismatch (the module, at fit
    start)."""
    why = scale_dependence(combiner, scope)
    if why is not None:
        rank_zero_warn(why)
