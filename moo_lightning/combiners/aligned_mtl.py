"""Aligned-MTL: independent component alignment (Senushkin, Patakin, Kuznetsov & Konushin,
CVPR 2023)."""

from __future__ import annotations

import numpy as np

from moo_lightning.combiners.base import Combiner

SCALE_MODES = ("min", "median", "rmse")


class AlignedMTL(Combiner):
    """Aligned-MTL: K (m, m), preference r (m,) -> w = B·(r/Σr) (m,) with
    B = √σ·V Λ^{-1/2} Vᵀ over the eigenpairs (Λ, V) of K above ``rcond``·λ_max.

    GᵀB has orthogonal rows of equal length √σ (on the kept eigen-directions): the gradient
    system is "aligned" (condition number 1) before the preference combines it. σ is the
    smallest kept eigenvalue (``min``, the paper's), the lower median (``median``, as
    torch.median) or the mean (``rmse``, the original code's name). With no eigenvalue above the
    cut-off (all gradients zero) B = I and w = r/Σr. The weights are invariant to a common
    gradient scale; they are not on the simplex."""

    name = "aligned_mtl"
    weights_on_simplex = False  # B·u: any sign, any sum

    def __init__(self, scale_mode: str = "min", rcond: float = 1e-10, on_failure: str = "raise"):
        super().__init__(on_failure)
        if scale_mode not in SCALE_MODES:
            raise ValueError(
                f"combiner.scale_mode must be one of {', '.join(SCALE_MODES)}. Found {scale_mode!r}"
            )
        self.scale_mode = scale_mode
        self.rcond = self.check_number("rcond", rcond, 0.0)
        if self.rcond >= 1.0:
            raise ValueError(f"combiner.rcond must be < 1 (a relative cut-off). Found {rcond!r}")

    def _combine(self, losses, gram, preference):
        u = preference / preference.sum()
        B, lam = balance_matrix(gram, self.scale_mode, self.rcond)
        if lam.size == 0:
            return u, {"rank": 0.0}
        return B @ u, {"rank": float(lam.size), "condition_number": float(lam[-1] / lam[0])}


def balance_matrix(
    gram: np.ndarray, scale_mode: str, rcond: float
) -> tuple[np.ndarray, np.ndarray]:
    """B = √σ·V Λ^{-1/2} Vᵀ over the eigenpairs of ``gram`` above ``rcond``·λ_max, and those
    eigenvalues (ascending); B = I and no eigenvalue when none is above the cut-off."""
    vals, vecs = np.linalg.eigh(gram)  # ascending
    top = float(vals.max())
    keep = vals > rcond * top if top > 0.0 else np.zeros(vals.size, dtype=bool)
    lam, V = vals[keep], vecs[:, keep]
    if lam.size == 0:
        return np.eye(gram.shape[0]), lam
    if scale_mode == "min":
        sigma = float(lam[0])
    elif scale_mode == "median":
        sigma = float(lam[(lam.size - 1) // 2])  # the lower median, as torch.median
    else:
        sigma = float(lam.mean())
    return (V * (np.sqrt(sigma) / np.sqrt(lam))) @ V.T, lam
