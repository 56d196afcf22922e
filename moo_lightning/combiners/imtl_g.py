"""IMTL-G: impartial multi-task learning, gradient part (Liu et al., ICLR 2021), in the form of
Quinton & Rey (2024) that accepts linearly dependent gradients."""

from __future__ import annotations

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
        vals, vecs = np.linalg.eigh(gram)
        top = float(vals.max()) if m else 0.0
        keep = vals > self.rcond * top if top > 0.0 else np.zeros(m, dtype=bool)
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        rank = int(keep.sum())
        # v = K⁺·√diag(K), through the kept eigenpairs only. Near (anti)parallel gradients K is
        # ill-conditioned and v large: a closed form for m = 2, or even this product on eigh's
        # column-major output instead of the kept columns' copy, differs in the last bits, and
        # that sent the toy problem to another end point; so the expression stays as it is.
        v = vecs[:, keep] @ ((vecs[:, keep].T @ norms) / vals[keep])
        total = float(v.sum())
        degenerate = not abs(total) > 1e-9 * float(np.abs(v).sum())
        w = np.zeros(m) if degenerate else v / total
        return w, {"rank": float(rank), "degenerate": float(degenerate)}
