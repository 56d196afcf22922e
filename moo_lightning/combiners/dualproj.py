"""DualProj: the preference-weighted mean gradient projected onto the dual cone of all gradients
(the projection of GEM, Lopez-Paz & Ranzato, NeurIPS 2017, as an aggregator in the sense of
Quinton & Rey 2024). One box QP of UPGrad's family (see ``upgrad.py``)."""

from __future__ import annotations

import time

import numpy as np

from moo_lightning.combiners.upgrad import _DualConeCombiner, conditioned_gram, dual_cone_weights


class DualProj(_DualConeCombiner):
    """DualProj: K (m, m), preference r (m,) -> w = argmin_{v ≥ r/Σr} vᵀK'v (m,) with
    K' = K/trace(K) + reg_eps·I: the direction closest (in K' norm) to the weighted mean that
    conflicts with no objective ((K'w)_i ≥ 0)."""

    name = "dualproj"

    def _combine(self, losses, gram, preference):
        start = time.perf_counter()
        A = conditioned_gram(gram, self.norm_eps, self.reg_eps)
        u = preference / preference.sum()
        w = dual_cone_weights(A, u)
        return w, {
            "lifted_bounds": float(np.count_nonzero(w - u > 0)),
            "solve_ms": 1e3 * (time.perf_counter() - start),
        }
