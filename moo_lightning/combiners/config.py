"""ConFIG: conflict-free inverse gradients (Liu, Chu & Thuerey, ICLR 2025), in Gram form."""

from __future__ import annotations

import numpy as np

from moo_lightning.combiners.base import Combiner


class ConFIG(Combiner):
    """ConFIG: K (m, m), preference r (m,) -> w (m,) with d = Gᵀw = ĝ·Σ_i g_iᵀĝ, where ĝ is the
    unit vector of U⁺r and U = D^{-1/2}G holds the unit gradients (D = diag K).

    In Gram form U⁺r = Uᵀ(UUᵀ)⁺r = Gᵀc with c = D^{-1/2}·Kₙ⁺·r, Kₙ = D^{-1/2}KD^{-1/2} (the
    cosine matrix), so w = c·(1ᵀKc)/(cᵀKc). For independent gradients the cosine of d with every
    g_i is proportional to r_i (r = 1: the same angle to every objective), and the length is the
    sum of the gradients' projections on ĝ. Kₙ⁺ drops eigenvalues below ``rcond``·λ_max;
    objectives with a zero gradient get weight 0. When U⁺r vanishes (no conflict-free direction)
    the weights are 0. The scale of r does not matter; the gradients' common scale neither."""

    name = "config"
    weights_on_simplex = False  # c·(1ᵀKc)/(cᵀKc): any sign, any sum

    def __init__(self, rcond: float = 1e-10, on_failure: str = "raise"):
        super().__init__(on_failure)
        self.rcond = self.check_number("rcond", rcond, 0.0)
        if self.rcond >= 1.0:
            raise ValueError(f"combiner.rcond must be < 1 (a relative cut-off). Found {rcond!r}")

    def _combine(self, losses, gram, preference):
        m = losses.size
        d = np.diag(gram).copy()
        live = d > 0.0  # objectives with a non-zero gradient (U's zero rows drop out of U⁺)
        w = np.zeros(m)
        if not live.any():
            return w, {"rank": 0.0, "degenerate": 1.0}
        s = np.sqrt(d[live])
        Kn = gram[np.ix_(live, live)] / np.outer(s, s)
        vals, vecs = np.linalg.eigh(Kn)
        keep = vals > self.rcond * float(vals.max())
        V, lam = vecs[:, keep], vals[keep]
        ct = V @ ((V.T @ preference[live]) / lam)  # Kₙ⁺ r
        energy = float(ct @ Kn @ ct)  # ‖U⁺r‖²
        if not energy > 1e-12 * float(ct @ ct):
            return w, {"rank": float(keep.sum()), "degenerate": 1.0}
        c = ct / s
        length = float(s @ (Kn @ ct))  # 1ᵀKc = Σ_i g_iᵀ(U⁺r)
        w[live] = c * length / energy
        return w, {"rank": float(keep.sum()), "degenerate": 0.0}
