"""GradVac: Gradient Vaccine (Wang, Tsvetkov, Firat & Cao, ICLR 2021), from K."""

from __future__ import annotations

import math

import numpy as np

from moo_lightning.combiners.base import Combiner


def gradvac_weights(
    gram: np.ndarray, targets: np.ndarray, orders: list[np.ndarray], beta: float, eps: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """One GradVac step on a Gram matrix. Row i of C holds the coefficients of the modified
    gradient g̃_i = Σ_k C_ik g_k (C starts at I), so g̃_iᵀg_j = (CK)_ij and ‖g̃_i‖² = (CKCᵀ)_ii.
    For each i and each j ≠ i in ``orders[i]``: φ = g̃_iᵀg_j/(‖g̃_i‖‖g_j‖ + eps); when φ is below
    the target φ̂_ij, g̃_i gains the multiple of g_j that lifts its cosine to φ̂_ij,
    ‖g̃_i‖(φ̂√(1−φ²) − φ√(1−φ̂²))/(‖g_j‖√(1−φ̂²) + eps); then φ̂_ij ← (1−β)φ̂_ij + βφ.

    Returns (w = Σ_i C_i, the new targets, the number of corrections)."""
    m = gram.shape[0]
    phi_hat = targets.copy()
    C = np.eye(m)
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    corrections = 0
    for i in range(m):
        dots = C[i] @ gram  # g̃_iᵀg_k for every k
        for j in orders[i]:
            if j == i:
                continue
            norm_i = math.sqrt(max(float(dots @ C[i]), 0.0))
            phi = float(dots[j]) / (norm_i * norms[j] + eps)
            target = phi_hat[i, j]
            if phi < target:
                root_phi = math.sqrt(max(1.0 - phi * phi, 0.0))
                root_target = math.sqrt(max(1.0 - target * target, 0.0))
                coef = norm_i * (target * root_phi - phi * root_target)
                coef /= norms[j] * root_target + eps
                C[i, j] += coef
                dots = dots + coef * gram[j]
                corrections += 1
            phi_hat[i, j] = (1.0 - beta) * target + beta * phi
    return C.sum(axis=0), phi_hat, corrections


class GradVac(Combiner):
    """GradVac: K (m, m) -> w (m,), the sum of the m "vaccinated" gradients (a sum, as the paper,
    LibMTL and TorchJD). Like PCGrad each gradient goes through the others in a random order, but
    instead of removing conflicts it lifts its cosine with g_j up to an adaptive target φ̂_ij, an
    EMA (``beta``) of the cosines seen at earlier steps; targets start at 0, where the first step
    is PCGrad.

    The cosines and coefficients are computed on K/max diag(K), where ``eps`` (TorchJD's
    denominator guard) acts; the coefficients are ratios of norms, so the weights do not change
    when every gradient is scaled by the same factor.

    State (``state_dict``): the targets φ̂ (m×m) after the last step, those before it, and that
    step. φ̂ advances once per optimizer step: calling again at the same ``step`` recomputes that
    step from the targets before it (the same weights for the same inputs, like the random
    orders, which come from :meth:`generator`, i.e. from (run seed, step)). The preference is not
    used."""

    name = "gradvac"
    uses_preference = False
    random_weights = True
    weights_on_simplex = False  # a sum of m modified gradients

    def __init__(self, beta: float = 0.5, eps: float = 1e-8, on_failure: str = "raise"):
        super().__init__(on_failure)
        self.beta = self.check_number("beta", beta, 0.0)
        if self.beta > 1.0:
            raise ValueError(f"combiner.beta must be a finite number in [0, 1]. Found {beta!r}")
        self.eps = self.check_number("eps", eps, 0.0)
        self._targets: np.ndarray | None = None  # φ̂ after the last step
        self._before: np.ndarray | None = None  # φ̂ before the last step
        self._last_step: int | None = None

    def orders(self, m: int) -> list[np.ndarray]:
        """The permutations this step uses, one per objective (drawn from ``generator()``)."""
        rng = self.generator()
        return [rng.permutation(m) for _ in range(m)]

    def state_dict(self) -> dict:
        def plain(a):
            return None if a is None else a.tolist()

        return {
            "phi": plain(self._targets),
            "phi_before": plain(self._before),
            "step": self._last_step,
        }

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"phi", "phi_before", "step"}:
            raise ValueError(
                f"combiner {self.name!r} keeps 'phi', 'phi_before' and 'step'; the checkpoint "
                f"holds {', '.join(sorted(state)) or 'nothing'} (made with another combiner?)"
            )

        def array(a):
            return None if a is None else np.array(a, dtype=np.float64)

        self._targets, self._before = array(state["phi"]), array(state["phi_before"])
        self._last_step = None if state["step"] is None else int(state["step"])
        if self._last_step is not None:
            self._calls = self._last_step + 1  # calls without a step continue counting

    def _combine(self, losses, gram, preference):
        m = losses.size
        if self._last_step is not None and self._step == self._last_step:
            start = self._before  # the same step again: recompute it
        else:
            start = self._targets
        if start is not None and start.shape != (m, m):
            raise ValueError(
                f"combiner {self.name!r} holds targets for {start.shape[0]} objectives; got {m}"
            )
        start = np.zeros((m, m)) if start is None else start
        scale = float(np.max(np.diag(gram)))
        Kn = gram / scale if scale > 0.0 else gram
        w, targets, corrections = gradvac_weights(Kn, start, self.orders(m), self.beta, self.eps)
        self._before, self._targets, self._last_step = start, targets, self._step
        return w, {"corrections": float(corrections)}
