"""UPGrad (Quinton & Rey, arXiv 2406.16232, 2024): every gradient, scaled by its preference entry,
projected onto the dual cone of all gradients; the projections are summed.

The projection of Gᵀu onto the dual cone {x : Gx ≥ 0} is Gᵀv with v = argmin_{v ≥ u} vᵀKv
(the paper's Proposition 1). Writing v = u + λ, λ ≥ 0, this is the box QP of PNG's dual,
min ½λᵀKλ + (Ku)ᵀλ. It is solved exactly: in closed form for m ≤ 2 (PNG's ``box_qp_two``), and
beyond as a non-negative least-squares problem min_{λ≥0} ‖Lᵀ(u + λ)‖² with K = LLᵀ, by the
Lawson–Hanson active-set method (finite, exact up to round-off), with the KKT conditions checked
afterwards.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import nnls

from moo_lightning.combiners.base import Combiner, SolverError
from moo_lightning.combiners.png import box_qp_two
from moo_lightning.combiners.programs import psd_factor


def conditioned_gram(gram: np.ndarray, norm_eps: float, reg_eps: float) -> np.ndarray:
    """K / trace(K) (zero when trace(K) < ``norm_eps`` or is 0) plus ``reg_eps``·I: the matrix the
    dual-cone QPs are posed on (TorchJD's convention, so its defaults give its numbers)."""
    trace = float(np.trace(gram))
    m = gram.shape[0]
    if trace <= 0.0 or trace < norm_eps:
        Kn = np.zeros((m, m))
    else:
        Kn = gram / trace
    return Kn + reg_eps * np.eye(m)


def dual_cone_weights(A: np.ndarray, u: np.ndarray, L: np.ndarray | None = None) -> np.ndarray:
    """v = argmin_{v ≥ u} vᵀAv for a PSD A (m, m) with trace O(1): the weights of the projection of
    Gᵀu onto the dual cone of G's rows. Raises SolverError when the KKT conditions fail."""
    m = u.size
    if m <= 2:
        lam = box_qp_two(A, A @ u)
    else:
        L = psd_factor(A) if L is None else L
        try:
            lam, _ = nnls(L.T, -(L.T @ u))
        except RuntimeError as err:  # iteration limit of the active-set method
            raise SolverError(f"dual-cone projection (NNLS) failed: {err}") from err
    v = u + lam
    # KKT of min_{λ≥0} ½λᵀAλ + (Au)ᵀλ: ∇ = Av ≥ 0 and λ_i ∇_i = 0
    grad = A @ v
    tol = 1e-8 * max(1.0, float(np.abs(A).max())) * max(1.0, float(np.abs(v).max()))
    if not (np.all(np.isfinite(v)) and grad.min() >= -tol and np.all(np.abs(lam * grad) <= tol)):
        raise SolverError(
            f"dual-cone projection missed its KKT conditions: min (Kv)_i = {grad.min():.3g}, "
            f"max |λ_i (Kv)_i| = {np.abs(lam * grad).max():.3g}"
        )
    return v


class _DualConeCombiner(Combiner):
    """Shared settings, flags and checks of UPGrad and DualProj."""

    weights_on_simplex = False  # the projections lengthen the direction: w ≥ r/Σr, Σw ≥ 1

    @property
    def unique_weights(self) -> bool:
        return self.reg_eps > 0.0  # without the ridge, v is unique only up to K's null space

    @property
    def gram_scale_invariant(self) -> bool:
        return self.norm_eps == 0.0  # norm_eps compares trace(K) with an absolute number

    def __init__(self, reg_eps: float = 1e-4, norm_eps: float = 0.0, on_failure: str = "raise"):
        super().__init__(on_failure)
        self.reg_eps = self.check_number("reg_eps", reg_eps, 0.0)
        self.norm_eps = self.check_number("norm_eps", norm_eps, 0.0)


class UPGrad(_DualConeCombiner):
    """UPGrad: K (m, m), preference r (m,) -> w = Σ_i v_i (m,) with u = r/Σr and
    v_i = argmin_{v ≥ u_i e_i} vᵀK'v, K' = K/trace(K) + reg_eps·I. The direction Gᵀw does not
    conflict with any objective ((K'w)_i ≥ 0), and with equal r and non-conflicting gradients it
    is their mean."""

    name = "upgrad"

    def _combine(self, losses, gram, preference):
        start = time.perf_counter()
        A = conditioned_gram(gram, self.norm_eps, self.reg_eps)
        u = preference / preference.sum()
        m = u.size
        L = psd_factor(A) if m > 2 else None
        w = np.zeros(m)
        lifted = 0
        for i in range(m):
            ui = np.zeros(m)
            ui[i] = u[i]
            v = dual_cone_weights(A, ui, L)
            lifted += int(np.count_nonzero(v - ui > 0))
            w += v
        return w, {
            "lifted_bounds": float(lifted),  # constraints v_j ≥ u_j that were not tight
            "solve_ms": 1e3 * (time.perf_counter() - start),
        }
