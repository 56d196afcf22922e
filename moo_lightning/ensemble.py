"""Ensembles of N models trained together, each by its own combiner solve: Pareto-set methods
(one preference per member) and criteria that couple the members (PNG on the energy distance of
their loss vectors, Ye & Liu 2022 eqs 5–6)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from moo_lightning.combiners.base import as_preference
from moo_lightning.combiners.criteria import energy_distance, negative_hypervolume
from moo_lightning.gradients import (
    member_gram_matrices,
    write_member_directions,
)
from moo_lightning.module import ConfigError, MultiObjectiveModule

# criteria that couple the members' loss vectors (N, m) into one number F
CRITERIA = ("energy", "hypervolume")


def spread_preferences(members: int, m: int = 2) -> np.ndarray:
    """``members`` two-objective preferences spread evenly over the quarter circle (as in the
    Pareto-MTL and EPO experiments), strictly inside it, normalised to the simplex: (N, 2)."""
    if m != 2:
        raise ValueError(f"spread preferences are defined for 2 objectives. Found m = {m}")
    angles = (np.arange(members) + 0.5) * (np.pi / 2) / members
    rays = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return rays / rays.sum(1, keepdims=True)


class EnsembleModule(MultiObjectiveModule):
    """N members whose parameters are stacked along dim 0 of every trainable parameter (member n
    is slice n; a vmapped network, or a (N, d) tensor). Subclasses implement ``objectives(batch)
    -> losses (N, m)``, member n's losses depending on slice n only.

    One step: m backward passes in all, whatever N — the gradient of Σ_n ℓ_ni w.r.t. the stacked
    parameters holds every member's ∇ℓ_ni in its own slice — then one Gram matrix and one combiner
    solve per member (with its own preference and, for coupling criteria, its own ∂F/∂ℓ_n from
    ``coupling_grads``), each member's slice of ``.grad`` set to its own direction, and one
    optimizer step for all. Gram-free combiners (LS) take one backward of Σ_n Σ_i w_ni ℓ_ni.

    ``preferences``: one row per member (N, m); ``'spread'`` spreads them over the quarter
    circle (two objectives); ``None`` gives every member ``preference``.

    ``criterion``: ``'energy'`` (Σ_{i≠j} ‖ℓ_i − ℓ_j‖⁻²) or ``'hypervolume'`` (−HV w.r.t.
    ``criterion_reference``) couples the members, each steered by its own ∂F/∂ℓ_n (a combiner
    that uses a criterion gradient: PNG); ``bound_criterion_grad`` keeps each member's ∂F/∂ℓ_n
    direction and bounds its norm by 1."""

    def __init__(
        self,
        combiner,
        preference,
        members: int,
        preferences: str | Sequence[Sequence[float]] | None = None,
        criterion: str | None = None,
        criterion_reference: tuple[float, float] = (1.0, 1.0),
        bound_criterion_grad: bool = True,
        num_objectives: int | None = None,
        **kwargs,
    ):
        if int(members) < 1:
            raise ValueError(f"module.members must be >= 1. Found {members}")
        if criterion is not None and criterion not in CRITERIA:
            raise ValueError(
                f"module.criterion must be one of {', '.join(CRITERIA)} or null. Found "
                f"{criterion!r}"
            )
        if criterion is not None and not combiner.uses_criterion_grad:
            raise ValueError(
                f"module.criterion={criterion} steers every member by the criterion's gradient: "
                f"combiner must be one that uses it (png). Found combiner {combiner.name!r}"
            )
        super().__init__(combiner, preference, num_objectives=num_objectives, **kwargs)
        if not self.scope.per_objective:
            raise ValueError(
                f"module.gradient_scope={self.scope.label} supports single models; ensembles "
                "take 'all' or 'shared'"
            )
        self.members = int(members)
        m = self.preference.size
        if preferences is None:
            rows = np.repeat(self.preference[None], self.members, axis=0)
        elif isinstance(preferences, str):
            if preferences != "spread":
                raise ValueError(
                    f"module.preferences must be 'spread', null or one row per member. "
                    f"Found {preferences!r}"
                )
            rows = spread_preferences(self.members, m)
        else:
            rows = np.asarray(
                [as_preference(r, m, f"module.preferences[{n}]") for n, r in enumerate(preferences)]
            )
            if rows.shape != (self.members, m):
                raise ValueError(
                    f"module.preferences must have one row of {m} entries per member "
                    f"({self.members}). Found shape {rows.shape}"
                )
        self.member_preferences = rows
        self._own_preferences = preferences is not None
        self.criterion = criterion
        self.criterion_reference = tuple(criterion_reference)
        self.bound_criterion_grad = bound_criterion_grad

    @property
    def num_rows(self) -> int:
        return self.members

    @property
    def row_preferences(self) -> np.ndarray:
        return self.member_preferences

    @property
    def recorded_preference(self) -> list[float] | None:
        """None when the members have preferences of their own (``preferences`` given) or follow
        a coupling criterion: the run followed no single preference."""
        if self._own_preferences or self.criterion is not None:
            return None
        return super().recorded_preference

    def coupling_grads(self, losses: torch.Tensor) -> torch.Tensor | None:
        """∂F/∂ℓ (N, m) of the criterion coupling the members' losses (N, m); None: none."""
        if self.criterion is None:
            return None
        L_ = losses.detach().double().requires_grad_(True)
        if self.criterion == "energy":
            value = energy_distance(L_)
        else:
            value = negative_hypervolume(L_, self.criterion_reference)
        (grad,) = torch.autograd.grad(value, L_)
        if self.bound_criterion_grad:
            # the energy's gradient grows like ‖Δℓ‖⁻³ for close members: keep each member's
            # direction and bound its size, so one learning rate serves every stage of the run
            grad = grad / grad.norm(dim=1, keepdim=True).clamp_min(1.0)
        return grad

    def on_fit_start(self):
        super().on_fit_start()
        for name, p in self.named_parameters():
            if p.requires_grad and (p.dim() == 0 or p.shape[0] != self.members):
                raise ConfigError(
                    f"{type(self).__name__}: every trainable parameter must stack the "
                    f"{self.members} members along dim 0; {name} has shape {tuple(p.shape)}"
                )

    def clip(self, opt) -> None:
        """Clip each member's direction to norm ``gradient_clip_val`` on its own (one norm over
        the whole stack would let one member's large gradient shrink every member's step)."""
        grads = [p.grad for p in self.trainable_parameters() if p.grad is not None]
        if not grads:
            return
        norms = (
            torch.stack([g.reshape(self.members, -1).double().pow(2).sum(1) for g in grads])
            .sum(0)
            .sqrt()
        )
        scale = (self.gradient_clip_val / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.to(g).view((self.members,) + (1,) * (g.dim() - 1)))

    def loss_rows(self, losses: torch.Tensor) -> torch.Tensor:
        if losses.dim() != 2 or losses.shape[0] != self.members:
            raise ValueError(
                f"objectives must return losses (members={self.members}, m). Found shape "
                f"{tuple(losses.shape)}"
            )
        return losses

    # members are independent: ∇ of Σ_n ℓ_ni gives each member's ∇ℓ_ni in its own slice

    def _grad_losses(self, rows):
        return rows.sum(0)

    def _grams(self, grads) -> torch.Tensor:
        return member_gram_matrices(grads)

    def _write_rows(self, grads, weights, params) -> None:
        write_member_directions(grads, weights, params, self._weighted())
