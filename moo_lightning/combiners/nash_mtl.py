"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022)."""

from __future__ import annotations

import math
import time

import numpy as np

from moo_lightning.combiners.base import Combiner, SolverError
from moo_lightning.combiners.mgda import min_norm_weights

# the residual max_i |α_i(Kα)_i − 1| accepted when the Newton budget is spent
ROUND_OFF_RESIDUAL = 1e-7


def bargaining_weights(
    K: np.ndarray, start: np.ndarray | None, max_iter: int, tol: float = 1e-10
) -> tuple[np.ndarray, int, float]:
    """The α > 0 with α_i·(Kα)_i = 1 for every i (Kα = 1/α), for a PSD K whose gradients have
    0 outside their convex hull.

    It is the unique minimiser of the strictly convex, self-concordant
    f(α) = ½αᵀKα − Σ log α_i. Damped Newton: the step 1/(1 + λ) (λ the Newton decrement)
    never leaves α > 0, and once λ < 1/4 full steps converge quadratically. Each start, warm or
    cold, is first moved to the best point of its ray, c = √(m/αᵀKα). Returns (α, Newton
    iterations, max_i |α_i(Kα)_i − 1|); raises SolverError when ``max_iter`` is not enough."""
    m = K.shape[0]
    alpha = np.ones(m) if start is None or np.any(~(start > 0)) else start.astype(np.float64)
    alpha *= math.sqrt(m / float(alpha @ K @ alpha))
    for it in range(max_iter + 1):
        Ka = K @ alpha
        residual = float(np.abs(alpha * Ka - 1.0).max())
        if residual <= tol:
            return alpha, it, residual
        if it == max_iter:
            # a nearly singular K (nearly opposite gradients) stalls Newton at a round-off
            # residual: an answer (the residual is in the diagnostics), not a failure
            if residual <= ROUND_OFF_RESIDUAL:
                return alpha, it, residual
            break
        grad = Ka - 1.0 / alpha
        H = K + np.diag(1.0 / alpha**2)
        step = -np.linalg.solve(H, grad)
        decrement = math.sqrt(max(float(-grad @ step), 0.0))
        alpha = alpha + (step if decrement < 0.25 else step / (1.0 + decrement))
        if not np.all(alpha > 0) or not np.all(np.isfinite(alpha)):
            raise SolverError("Nash-MTL Newton iterate left α > 0 (round-off in a singular K)")
    raise SolverError(
        f"Nash-MTL did not converge in optim_niter={max_iter} Newton steps "
        f"(max |α_i (Kα)_i − 1| = {residual:.3g})"
    )


class NashMTL(Combiner):
    """Nash-MTL: K (m, m) -> α (m,) with Kα = 1/α (the Nash bargaining solution: d = Gᵀα
    maximises Σ log g_iᵀd in a ball), scaled down to ‖Gᵀα‖ = max_norm when longer
    (``max_norm: 0`` never scales). As in the paper and the reference code the fixed point is
    that of the raw K, so ‖Gᵀα‖² = αᵀKα = m whatever the gradients' scale: the weights scale like
    1/√(scale of K). It is computed on Kₙ = K/‖K‖_F (α = αₙ/√‖K‖_F) for conditioning.

    State (``state_dict``): the last solved α, which warm-starts the next solve and is reused
    between solves when ``update_weights_every`` > 1, and the number of calls, which decides
    when to solve (calls 0, k, 2k, … as the reference code). A resumed run continues bit for bit.

    When 0 lies in the gradients' convex hull (a Pareto-stationary point, by MGDA's min-norm
    value) no direction improves every objective, the bargaining problem has no solution, and
    the weights are 0 (no step), with the diagnostic ``stationary`` = 1. The preference is not
    used."""

    name = "nash_mtl"
    uses_preference = False
    weights_on_simplex = False  # α_i (Kα)_i = 1: α is a scale, not a convex combination

    gram_scale_invariant = False  # Kα = 1/α on the raw K: α scales like 1/√(scale of K)

    def __init__(
        self,
        max_norm: float = 1.0,
        update_weights_every: int = 1,
        optim_niter: int = 100,
        on_failure: str = "raise",
    ):
        super().__init__(on_failure)
        self.max_norm = self.check_number("max_norm", max_norm, 0.0)
        for key, value in (
            ("update_weights_every", update_weights_every),
            ("optim_niter", optim_niter),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"combiner.{key} must be an integer >= 1. Found {value!r}")
        self.update_weights_every = int(update_weights_every)
        self.optim_niter = int(optim_niter)
        self._alpha: list[float] | None = None  # last solved α, before max_norm
        self._count = 0  # calls so far

    def state_dict(self) -> dict:
        return {"alpha": None if self._alpha is None else list(self._alpha), "calls": self._count}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"alpha", "calls"}:
            raise ValueError(
                f"combiner {self.name!r} keeps 'alpha' and 'calls'; the checkpoint holds "
                f"{', '.join(sorted(state)) or 'nothing'} (made with another combiner?)"
            )
        alpha = state["alpha"]
        self._alpha = None if alpha is None else [float(a) for a in alpha]
        self._count = int(state["calls"])

    def _combine(self, losses, gram, preference):
        m = losses.size
        start = time.perf_counter()
        diag = {"solved": 0.0, "stationary": 0.0}
        previous = None if self._alpha is None else np.array(self._alpha)
        if previous is not None and previous.size != m:
            raise ValueError(
                f"combiner {self.name!r} holds α for {previous.size} objectives; got {m}"
            )
        reuse = previous is not None and self._count % self.update_weights_every != 0
        self._count += 1
        if reuse:
            alpha = previous
        else:
            frob = float(np.linalg.norm(gram))
            Kn = gram / frob if frob > 0.0 else gram
            value = min_norm_weights(Kn)[1] if frob > 0.0 else 0.0
            if value <= 1e-12:  # 0 in the convex hull: no bargaining solution
                diag["stationary"] = 1.0
                return np.zeros(m), diag | {"solve_ms": 1e3 * (time.perf_counter() - start)}
            alpha_n, iters, residual = bargaining_weights(Kn, previous, self.optim_niter)
            alpha = alpha_n / math.sqrt(frob)
            self._alpha = [float(a) for a in alpha]
            diag |= {"solved": 1.0, "newton_iterations": float(iters), "residual": residual}
        norm = math.sqrt(max(float(alpha @ gram @ alpha), 0.0))  # ‖Gᵀα‖ on the raw gradients
        scale = self.max_norm / norm if 0.0 < self.max_norm < norm else 1.0
        diag |= {"direction_norm": norm * scale, "solve_ms": 1e3 * (time.perf_counter() - start)}
        return alpha * scale, diag
