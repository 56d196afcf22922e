"""FairGrad: fair resource allocation in multi-task learning (Ban & Ji, ICML 2024)."""

from __future__ import annotations

import time

import numpy as np

from moo_lightning.combiners.base import Combiner, SolverError
from moo_lightning.combiners.mgda import min_norm_weights

# the residual max_i |w_i^{1/α}(Kw)_i − 1| accepted when max_iter is spent
ROUND_OFF_RESIDUAL = 1e-7


def fair_weights(
    K: np.ndarray, alpha: float, max_iter: int, tol: float = 1e-10
) -> tuple[np.ndarray, int, float]:
    """The w > 0 with Kw = w^{-1/α} (α > 0), for a PSD K whose gradients have 0 outside their
    convex hull: the unique minimiser of the strictly convex f(w) = ½wᵀKw − Σ h(w_i) with
    h'(w) = w^{-1/α} (h = log w at α = 1). Newton from w = 1 with a backtracking (Armijo) line
    search that keeps w > 0 (full steps once the Newton decrement is below f's round-off);
    stops at max_i |w_i^{1/α}(Kw)_i − 1| ≤ ``tol``. Returns (w, iterations, that residual);
    raises SolverError when ``max_iter`` is not enough."""
    p = 1.0 - 1.0 / alpha

    def f(w):
        h = np.log(w) if p == 0.0 else w**p / p
        return 0.5 * float(w @ K @ w) - float(h.sum())

    w = np.ones(K.shape[0])
    for it in range(max_iter + 1):
        Kw = K @ w
        residual = float(np.abs(w ** (1.0 / alpha) * Kw - 1.0).max())
        if residual <= tol:
            return w, it, residual
        if it == max_iter:
            # nearly opposite gradients make K nearly singular and the weights large: Newton
            # then stalls at a round-off residual (1e-10 … 1e-8), an answer, not a failure (the
            # residual is in the diagnostics)
            if residual <= ROUND_OFF_RESIDUAL:
                return w, it, residual
            break
        grad = Kw - w ** (-1.0 / alpha)
        H = K + np.diag(w ** (-1.0 / alpha - 1.0) / alpha)
        step = -np.linalg.solve(H, grad)
        t, f0, slope = 1.0, f(w), float(grad @ step)
        # near the solution the decrease −slope falls below f's round-off, where an Armijo test
        # only sees noise: there the full step (quadratic convergence) is taken if it stays > 0
        near = -slope <= 1e-10 * max(1.0, abs(f0))
        while True:
            trial = w + t * step
            if np.all(trial > 0) and (near or f(trial) <= f0 + 1e-4 * t * slope):
                break
            t *= 0.5
            if t < 1e-12:
                raise SolverError("FairGrad line search stalled (round-off in a singular K)")
        w = trial
    raise SolverError(
        f"FairGrad did not converge in max_iter={max_iter} Newton steps "
        f"(max |w_i^(1/α) (Kw)_i − 1| = {residual:.3g})"
    )


class FairGrad(Combiner):
    """FairGrad: K (m, m) -> w > 0 (m,) with Kw = w^{-1/α} on the raw K (α-fair utilities
    g_iᵀd = w_i^{-1/α}); α = 0 gives the uniform weights 1/m (linear scalarisation), α = 1 the
    Nash bargaining point (Nash-MTL without its max_norm), α → ∞ approaches the max-min fair
    (MGDA-like) direction. Solved on Kₙ = K/‖K‖_F for conditioning, then
    w = wₙ·‖K‖_F^{-α/(1+α)}: the weights depend on the gradients' scale. At a Pareto-stationary
    point (0 in the gradients' convex hull) no solution exists: the weights are 0, with the
    diagnostic ``stationary`` = 1. The preference is not used."""

    name = "fairgrad"
    uses_preference = False
    weights_on_simplex = False
    gram_scale_invariant = False  # w scales like (scale of K)^{-α/(1+α)} (α > 0)

    def __init__(self, alpha: float = 1.0, max_iter: int = 100, on_failure: str = "raise"):
        super().__init__(on_failure)
        self.alpha = self.check_number("alpha", alpha, 0.0)
        if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
            raise ValueError(f"combiner.max_iter must be an integer >= 1. Found {max_iter!r}")
        self.max_iter = int(max_iter)

    def _combine(self, losses, gram, preference):
        m = losses.size
        start = time.perf_counter()
        if self.alpha == 0.0:
            return np.full(m, 1.0 / m), {"stationary": 0.0}
        frob = float(np.linalg.norm(gram))
        Kn = gram / frob if frob > 0.0 else gram
        if frob == 0.0 or min_norm_weights(Kn)[1] <= 1e-12:
            return np.zeros(m), {"stationary": 1.0}
        w, iters, residual = fair_weights(Kn, self.alpha, self.max_iter)
        w = w * frob ** (-self.alpha / (1.0 + self.alpha))
        return w, {
            "stationary": 0.0,
            "newton_iterations": float(iters),
            "residual": residual,
            "solve_ms": 1e3 * (time.perf_counter() - start),
        }
