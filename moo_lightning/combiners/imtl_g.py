"""IMTL-G: impartial multi-task learning, gradient part (Liu et al., ICLR 2021), in the form of
Quinton & Rey (2024) that accepts linearly dependent gradients."""

from __future__ import annotations

import math

import numpy as np

from moo_lightning.combiners.base import Combiner


class IMTLG(Combiner):
    """IMTL-G: K (m, m) -> w = K⁺·√diag(K) / Σ(K⁺·√diag(K)) (m,).

    For linearly independent gradients the direction d = Gᵀw has the same projection on every
    unit gradient, g_iᵀd/‖g_i‖ = 1/Σv (the paper's "impartial" step), and Σw = 1. K⁺ is the
    pseudo-inverse from an eigendecomposition that drops eigenvalues below ``rcond``·λ_max: the
    small eigenvalues of a Gram computed in floating point are noise, and this cut-off decides
    what counts as a dependent gradient. When Σv vanishes (e.g. two opposite gradients, or all
    gradients zero) no direction is impartial and the weights are 0 (as TorchJD), flagged by
    the diagnostic ``degenerate``. Weights can be negative; the preference is not used."""

    name = "imtl_g"
    uses_preference = False
    weights_on_simplex = False  # Σw = 1, but weights can be negative

    def __init__(self, rcond: float = 1e-10, on_failure: str = "raise"):
        super().__init__(on_failure)
        self.rcond = self.check_number("rcond", rcond, 0.0)
        if self.rcond >= 1.0:
            raise ValueError(f"combiner.rcond must be < 1 (a relative cut-off). Found {rcond!r}")

    def _combine(self, losses, gram, preference):
        m = losses.size
        if m == 2:
            v, rank = self._v_two(gram)
        else:
            vals, vecs = np.linalg.eigh(gram)
            top = float(vals[-1]) if m else 0.0  # eigh sorts ascending
            keep = vals > self.rcond * top if top > 0.0 else np.zeros(m, dtype=bool)
            norms = np.sqrt(np.maximum(np.diagonal(gram), 0.0))
            rank = int(keep.sum())
            # v = K⁺·√diag(K), through the kept eigenpairs only
            if rank == m:
                v = vecs @ ((vecs.T @ norms) / vals)
            else:
                v = vecs[:, keep] @ ((vecs[:, keep].T @ norms) / vals[keep])
        total = float(v.sum())
        degenerate = not abs(total) > 1e-9 * float(np.abs(v).sum())
        w = np.zeros(m) if degenerate else v / total
        return w, {"rank": float(rank), "degenerate": float(degenerate)}

    def _v_two(self, gram: np.ndarray) -> tuple[np.ndarray, int]:
        """K⁺·√diag(K) for m = 2 in closed form (the same eigenvalue cut-off as the general
        path): the eigenvalues of [[a, b], [b, c]] are (a + c)/2 ± √(((a − c)/2)² + b²)."""
        (a, b), (_, c) = gram.tolist()
        n1, n2 = math.sqrt(max(a, 0.0)), math.sqrt(max(c, 0.0))
        half, radius = 0.5 * (a + c), math.hypot(0.5 * (a - c), b)
        top, low = half + radius, half - radius
        if not top > 0.0:
            return np.zeros(2), 0
        if low > self.rcond * top:  # full rank: K⁻¹·n by Cramer's rule, det = top·low
            det = top * low
            return np.array([(c * n1 - b * n2) / det, (a * n2 - b * n1) / det]), 2
        # rank one: K⁺ = u·uᵀ/top with u the top eigenvector; of the two formulas for u,
        # the one with the larger norm is the accurate one
        u1, u2 = (top - c, b) if abs(top - c) >= abs(top - a) else (b, top - a)
        norm_sq = u1 * u1 + u2 * u2
        if norm_sq == 0.0:  # b = 0 and a = c: K = top·I up to the cut-off; any unit u
            u1, u2, norm_sq = 1.0, 0.0, 1.0
        scale = (u1 * n1 + u2 * n2) / (norm_sq * top)
        return np.array([u1 * scale, u2 * scale]), 1
