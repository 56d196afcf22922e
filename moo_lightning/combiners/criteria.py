"""Criteria F(ℓ; r) that PNG (Ye & Liu 2022) minimises inside the Pareto set: functions of
one loss vector (m,), and the ensemble criteria that couple N members' loss vectors (N, m)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from moo_lightning.errors import ConfigError

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ParameterCriterion:
    """A criterion F(θ) that depends on the parameters directly (features, an adversary's view,
    a fairness gap), not only through the losses: its gradient f = ∇F is not in the span of the
    objectives' gradients, so a combiner sees it only through inner products (PNG's general
    case, Ye & Liu 2022): ``cross`` (m,) = ∇ℓ_iᵀf and ``sq_norm`` = ‖f‖². The direction then
    combines m + 1 gradients; the combiner returns the weights of the m objectives and
    ``Combined.criterion_weight`` for f. With f = Gᵀ(∂F/∂ℓ) this is the loss-space criterion:
    cross = K ∂F/∂ℓ, and the two give the same direction."""

    cross: np.ndarray
    sq_norm: float


class NonUniformity:
    """EPO's non-uniformity μ(ℓ; r) = Σ p_i log(m p_i), p = r⊙ℓ/Σ r⊙ℓ. PNG with it targets the
    ray r_1ℓ_1 = … = r_mℓ_m, like EPO. It assumes losses > 0: losses below ``floor`` are raised
    to it (their gradient is then 0), and PNG counts them (:meth:`clamped`, the diagnostic
    ``clamped_losses``)."""

    floor = 1e-12

    def clamped(self, losses: np.ndarray) -> int:
        """How many of ``losses`` the criterion raises to its floor."""
        return int(np.sum(np.asarray(losses) < self.floor))

    def __call__(self, losses: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
        rl = preference * losses.clamp_min(self.floor)
        p = rl / rl.sum()
        return (p * torch.log(losses.numel() * p)).sum()


class WeightedDistance:
    """F = Σ_i (ℓ_i − t_i)² / t_i with target t (the preference when ``target`` is None)."""

    def __init__(self, target: list[float] | None = None):
        if target is not None:
            try:
                values = [float(v) for v in target]
            except (TypeError, ValueError):
                values = []
            if not values or not all(math.isfinite(v) and v > 0 for v in values):
                raise ValueError(
                    "combiner.criterion.target must be a list of finite numbers > 0 (one per "
                    f"objective; F divides by them). Found {list(target)!r}"
                )
        self.target = None if target is None else torch.as_tensor(target, dtype=torch.float64)

    def __call__(self, losses: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
        t = preference if self.target is None else self.target.to(losses)
        if t.shape != losses.shape:
            raise ConfigError(
                f"combiner.criterion.target must have one entry per objective "
                f"({losses.numel()}). Found {t.numel()}"
            )
        return ((losses - t) ** 2 / t).sum()


class ComplexCosine:
    """F = −cos(π(ℓ1 − t1)/2) + (cos(π(ℓ2 − t2)) + 1)², two objectives (Ye & Liu 2022, §7.1)."""

    def __init__(self, target: list[float] | None = None):
        self.target = None if target is None else torch.as_tensor(target, dtype=torch.float64)

    def __call__(self, losses: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
        if losses.numel() != 2:
            raise ValueError(f"ComplexCosine is defined for 2 objectives. Found {losses.numel()}")
        t = preference if self.target is None else self.target.to(losses)
        return (
            -torch.cos(math.pi * (losses[0] - t[0]) / 2)
            + (torch.cos(math.pi * (losses[1] - t[1])) + 1) ** 2
        )


def energy_distance(losses: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Energy of an ensemble's loss vectors L (N, m): Σ_{i≠j} ‖ℓ_i − ℓ_j‖⁻²
    (Ye & Liu 2022, eqs 5–6)."""
    diff = losses[:, None, :] - losses[None, :, :]
    sq = (diff**2).sum(-1)
    off = ~torch.eye(losses.shape[0], dtype=torch.bool, device=losses.device)
    return (1.0 / (sq[off] + eps)).sum()


def negative_hypervolume(
    losses: torch.Tensor, ref: tuple[float, float] = (1.0, 1.0)
) -> torch.Tensor:
    """−HV of an ensemble's two-objective loss vectors L (N, 2) w.r.t. ``ref``, differentiable
    in L. With the non-dominated points inside the box sorted by ℓ1,
    HV = Σ_k (x_{k+1} − x_k)(r_y − y_k) and x_{K+1} = r_x. Dominated points contribute
    nothing (zero gradient)."""
    if losses.dim() != 2 or losses.shape[1] != 2:
        raise ValueError(
            f"negative_hypervolume needs losses of shape (N, 2). Found {tuple(losses.shape)}"
        )
    rx, ry = ref
    vals = losses.detach()
    inside = (vals[:, 0] < rx) & (vals[:, 1] < ry)
    dominated = (
        (vals[None, :, :] <= vals[:, None, :]).all(-1)
        & (vals[None, :, :] < vals[:, None, :]).any(-1)
    ).any(1)
    keep = torch.nonzero(inside & ~dominated).flatten()
    if keep.numel() == 0:
        return losses.sum() * 0.0
    pts = losses[keep[torch.argsort(vals[keep, 0])]]
    right = torch.cat([pts[1:, 0], pts.new_tensor([rx])])
    return -((right - pts[:, 0]) * (ry - pts[:, 1])).sum()


def criterion_gradient(criterion: Criterion, losses: np.ndarray, preference: np.ndarray):
    """(F, ∂F/∂ℓ) by autograd on the m-vector ℓ, in float64."""
    ell = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
    value = criterion(ell, torch.tensor(preference, dtype=torch.float64))
    if value.numel() != 1:
        raise ValueError(f"PNG criterion must return a scalar. Found shape {tuple(value.shape)}")
    (grad,) = torch.autograd.grad(value, ell, allow_unused=True)
    grad = torch.zeros_like(ell) if grad is None else grad
    return float(value.detach()), grad.numpy()
