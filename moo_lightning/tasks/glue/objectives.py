"""Supervised contrastive objectives: the ℓ_pos / ℓ_neg split of the seed paper for multi-objective
training, the SCL loss of Gunel et al. (ICLR 2021), and the objective choices that return a loss
vector."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from moo_lightning.gradients import world_size


def _similarities(z: torch.Tensor, labels: torch.Tensor):
    if z.dim() != 2 or labels.shape != (z.shape[0],):
        raise ValueError(
            f"expected embeddings (B, d) and labels (B,). Found {tuple(z.shape)} and "
            f"{tuple(labels.shape)}"
        )
    h = F.normalize(z, dim=-1)
    S = h @ h.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    return S, same, eye


def _masked_logmeanexp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise log(mean over mask of exp(x)); rows with an empty mask give -inf."""
    lse = torch.logsumexp(x.masked_fill(~mask, float("-inf")), dim=1)
    return lse - torch.log(mask.sum(1).clamp_min(1).to(x.dtype))


def _class_average(per_anchor: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor):
    """Average per anchor within each class, then over the classes with any valid anchor."""
    classes, inverse = torch.unique(labels, return_inverse=True)
    onehot = F.one_hot(inverse, len(classes)).to(per_anchor.dtype) * valid[:, None]
    counts = onehot.sum(0)
    keep = counts > 0
    values = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    per_class = (onehot.T @ values)[keep] / counts[keep]
    return per_class.mean(), int(keep.sum())


def pos_neg_losses(
    z: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """ℓ_pos and ℓ_neg of a batch (the seed paper's eqs 2–3, shifted by ∓1/τ so that both
    objectives are ≥ 0).

    z (B, d) embeddings (ℓ2-normalised here), labels (B,) ints, τ > 0. Both losses are ≥ 0,
    averaged per class and then over classes. Raises ValueError for a batch in which no class has
    two members (ℓ_pos undefined) or with a single class (ℓ_neg undefined)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0. Found {temperature}")
    S, same, eye = _similarities(z, labels)
    pos_mask, neg_mask = same & ~eye, ~same
    has_pos, has_neg = pos_mask.any(1), neg_mask.any(1)
    if not has_pos.any():
        raise ValueError(
            "l_pos is undefined: no class has two members in this batch "
            "(use class-balanced batches with at least two examples per class)"
        )
    if not has_neg.any():
        raise ValueError(
            f"l_neg is undefined: the batch holds a single class ({int(labels[0])}); "
            "use class-balanced batches"
        )
    pos_anchor = -_masked_logmeanexp((S - 1) / temperature, pos_mask)
    neg_anchor = _masked_logmeanexp((S + 1) / temperature, neg_mask)
    l_pos, _ = _class_average(pos_anchor, labels, has_pos)
    l_neg, _ = _class_average(neg_anchor, labels, has_neg)
    return l_pos, l_neg


def supervised_contrastive_loss(
    z: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Gunel et al. (2021) SCL: mean over anchors with ≥ 1 positive of
    −(1/|P(i)|) Σ_{p∈P(i)} log(exp(S_ip/τ) / Σ_{a≠i} exp(S_ia/τ)). z (B, d), labels (B,)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0. Found {temperature}")
    S, same, eye = _similarities(z, labels)
    logits = S / temperature
    log_denominator = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1)
    pos = same & ~eye
    has_pos = pos.any(1)
    if not has_pos.any():
        raise ValueError("SCL is undefined: no class has two members in this batch")
    log_prob = logits - log_denominator[:, None]
    per_anchor = -(log_prob * pos).sum(1) / pos.sum(1).clamp_min(1)
    return per_anchor[has_pos].mean()


def _check_weight(lam: float, temperature: float) -> None:
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"objective.lam must lie in [0, 1]. Found {lam}")
    if not 0 < temperature < math.inf:
        raise ValueError(
            f"objective.temperature must be a finite number > 0. Found {temperature} (at inf "
            "both contrastive terms are the same constant)"
        )


def gather_global_batch(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings and labels of every DDP rank, concatenated in rank order, with gradients
    flowing back to each rank's own rows; (z, labels) unchanged without DDP. Ranks may hold
    batches of different sizes (padded for the collective, trimmed after).

    Every rank then computes the same contrastive term on the global batch. The all-gather's
    backward sums the rows' gradients over ranks, so each rank's gradient is R times its own
    share; averaging gradients over the R ranks (DDP, or the combiner's reduction) gives exactly
    the gradient of the global-batch loss."""
    world = world_size()
    if world == 1:
        return z, labels
    from torch.distributed.nn.functional import all_gather

    size = torch.tensor([z.shape[0]], device=z.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    pad = max(sizes) - z.shape[0]
    z_pad = F.pad(z, (0, 0, 0, pad))
    y_pad = F.pad(labels, (0, pad), value=-1)
    zs = all_gather(z_pad)
    ys = [torch.empty_like(y_pad) for _ in range(world)]
    dist.all_gather(ys, y_pad)
    z_all = torch.cat([zi[:n] for zi, n in zip(zs, sizes)])
    y_all = torch.cat([yi[:n] for yi, n in zip(ys, sizes)])
    return z_all, y_all


class _WeightedContrastive:
    """Objectives mixing CE with a contrastive term at weight λ and temperature τ.
    ``global_batch``: under DDP, compute the contrastive term over the embeddings of all ranks
    (all-gather with gradients) instead of each rank's own batch; CE stays per rank (its mean
    over ranks is already the global-batch CE). No effect in a single process."""

    def __init__(self, lam: float = 0.3, temperature: float = 0.3, global_batch: bool = False):
        _check_weight(lam, temperature)
        if not isinstance(global_batch, bool):
            raise ValueError(
                f"objective.global_batch must be true or false. Found {global_batch!r}"
            )
        self.lam, self.temperature = float(lam), float(temperature)
        self.global_batch = global_batch

    def contrastive_batch(self, z, labels):
        return gather_global_batch(z, labels) if self.global_batch else (z, labels)


class MOOContrastive(_WeightedContrastive):
    """Two objectives: ℓ1 = λℓ_pos + (1−λ)CE, ℓ2 = λℓ_neg + (1−λ)CE (the seed paper's eqs 4–5)."""

    num_objectives = 2
    name = "moo"

    def __call__(self, logits, z, labels) -> torch.Tensor:
        ce = F.cross_entropy(logits, labels)
        l_pos, l_neg = pos_neg_losses(*self.contrastive_batch(z, labels), self.temperature)
        lam = self.lam
        return torch.stack([lam * l_pos + (1 - lam) * ce, lam * l_neg + (1 - lam) * ce])


class CrossEntropy:
    """Single objective: cross-entropy alone (baseline)."""

    num_objectives = 1
    name = "ce"

    def __call__(self, logits, z, labels) -> torch.Tensor:
        return F.cross_entropy(logits, labels).reshape(1)


class CrossEntropySCL(_WeightedContrastive):
    """Single objective: (1−λ)CE + λ·SCL (Gunel et al. 2021 baseline)."""

    num_objectives = 1
    name = "ce_scl"

    def __call__(self, logits, z, labels) -> torch.Tensor:
        ce = F.cross_entropy(logits, labels)
        scl = supervised_contrastive_loss(*self.contrastive_batch(z, labels), self.temperature)
        return ((1 - self.lam) * ce + self.lam * scl).reshape(1)


__all__ = [
    "CrossEntropy",
    "CrossEntropySCL",
    "MOOContrastive",
    "gather_global_batch",
    "pos_neg_losses",
    "supervised_contrastive_loss",
]
