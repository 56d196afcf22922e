"""IMTL-G: impartial multi-task learning, gradient part (Liu et al., ICLR 2021), in the form of
Quinton & Rey (2024) that accepts linearly dependent gradients."""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dsyevd as _dsyevd

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
        if m <= 2:
            v, rank = self._solve_small(gram, m)
        else:
            v, rank = self._solve(gram, m)
        total = float(v.sum())
        # Σ|v| in Python: for m <= 2 the same float as np.abs(v).sum(), with two fewer numpy calls
        degenerate = not abs(total) > 1e-9 * sum(map(abs, v.tolist()))
        w = np.zeros(m) if degenerate else v / total
        return w, {"rank": float(rank), "degenerate": float(degenerate)}

    def _solve_small(self, gram, m):
        """v = K⁺·√diag(K) for m <= 2, in the arithmetic every recorded IMTL-G run used. Near
        (anti)parallel gradients K is ill-conditioned and v large: a closed form for m = 2, or
        even this product on eigh's output instead of the kept columns' copy, differs in the
        last bits, and that sent the toy problem to another end point; so the floats stay
        exactly these (np.clip(x, 0, None) is np.maximum(x, 0); eigh's eigenvalues ascend)."""
        vals, vecs = np.linalg.eigh(gram)
        top = float(vals[-1])
        keep = vals > self.rcond * top if top > 0.0 else np.zeros(m, dtype=bool)
        norms = np.sqrt(np.maximum(gram.diagonal(), 0.0))
        kept = vecs[:, keep]
        return kept @ ((kept.T @ norms) / vals[keep]), np.count_nonzero(keep)

    def _solve(self, gram, m):
        """v = K⁺·√diag(K) for m > 2: the LAPACK routine of np.linalg.eigh (dsyevd), called
        through scipy without numpy's wrapper; all eigenpairs are used when all are kept."""
        vals, vecs, info = _dsyevd(gram, compute_v=1, lower=1)
        if info:
            raise np.linalg.LinAlgError(f"Eigenvalues did not converge (dsyevd info {info})")
        top = float(vals[-1])  # ascending
        proj = np.sqrt(np.maximum(gram.diagonal(), 0.0)) @ vecs  # Vᵀ·√diag(K)
        if not top > 0.0:
            return np.zeros(m), 0
        keep = vals > self.rcond * top
        rank = np.count_nonzero(keep)
        if rank == m:
            return vecs @ (proj / vals), rank
        return vecs[:, keep] @ (proj[keep] / vals[keep]), rank
