"""CAGrad: conflict-averse gradient descent (Liu, Liu, Stone & Liu, NeurIPS 2021)."""

from __future__ import annotations

import math
import time

import cvxpy as cp
import numpy as np

from moo_lightning.combiners.base import Combiner, SolverError
from moo_lightning.combiners.programs import ACCEPTED, Program, Programs, psd_factor, solve_program


def _inner_two(Kb: np.ndarray, K: np.ndarray, s: float) -> np.ndarray:
    """Exact argmin over the 2-simplex w = (t, 1 − t) of wᵀKb + s·√(wᵀKw) (s > 0).

    Along t: p·t + s·√(a t² + 2βt + γ) + const. With S = at + β the root is √((S² + D)/a),
    D = aγ − β² ≥ 0, and the stationarity condition S·√a/√(S² + D) = −p/s =: ρ has the single
    root S = ρ·√(D/(a − ρ²)) when ρ² < a. The function is convex, so its minimum over [0, 1] is
    at that root, at the kink S = 0 (rank-one K), or at an end; the best candidate wins."""
    d = np.array([1.0, -1.0])
    p = float(d @ Kb)
    a = float(d @ K @ d)
    beta = float(d @ K[:, 1])
    gamma = float(K[1, 1])
    if a <= 1e-15 * max(gamma, 1e-300):  # identical gradients: every t gives the same direction
        return np.array([0.5, 0.5])
    D = max(a * gamma - beta * beta, 0.0)
    candidates = [0.0, 1.0, min(1.0, max(0.0, -beta / a))]
    rho = -p / s
    if rho * rho < a:
        S = rho * math.sqrt(D / (a - rho * rho))
        candidates.append(min(1.0, max(0.0, (S - beta) / a)))

    def f(t):
        return p * t + s * math.sqrt(max(a * t * t + 2 * beta * t + gamma, 0.0))

    t = min(candidates, key=f)
    return np.array([t, 1.0 - t])


class _InnerSOCP(Program):
    """min_{w∈Δ} qᵀw + ‖Lᵀw‖ with K = LLᵀ and q = Kb/s, compiled once for m objectives (DPP)."""

    def __init__(self, m: int):
        self.w = cp.Variable(m, nonneg=True)
        self.L = cp.Parameter((m, m))
        self.q = cp.Parameter(m)
        objective = cp.Minimize(self.q @ self.w + cp.norm(self.L.T @ self.w, 2))
        self.problem = cp.Problem(objective, [cp.sum(self.w) == 1])

    def priming(self):
        m = self.q.size
        yield self.problem, {self.L: np.eye(m), self.q: np.ones(m)}

    def solve(self, K: np.ndarray, q: np.ndarray, solver: str) -> np.ndarray:
        self.L.value, self.q.value = psd_factor(K), q
        status = solve_program(self.problem, solver)
        if status not in ACCEPTED:
            raise SolverError(f"CAGrad inner problem returned status {status!r}")
        w = np.clip(self.w.value, 0.0, None)
        w /= w.sum()
        polished = _polish(K, q, w)
        return w if polished is None else polished


def _objective(K: np.ndarray, q: np.ndarray, w: np.ndarray) -> float:
    return float(q @ w + math.sqrt(max(float(w @ K @ w), 0.0)))


def _polish(K: np.ndarray, q: np.ndarray, w: np.ndarray, iters: int = 20) -> np.ndarray | None:
    """Newton steps for qᵀw + ‖Lᵀw‖ on the face of Δ spanned by the SOCP's support (smooth there
    while ‖Lᵀw‖ > 0): the interior-point answer is accurate to about √gap in w, the polished one
    to round-off. None unless the result is feasible, no worse, and meets the KKT conditions."""
    S = np.flatnonzero(w > 1e-7)
    x = w[S] / w[S].sum()
    KS = K[np.ix_(S, S)]
    k = S.size
    for _ in range(iters):
        Kx = KS @ x
        n = math.sqrt(max(float(x @ Kx), 0.0))
        if n <= 1e-12:
            return None
        grad = q[S] + Kx / n
        H = KS / n - np.outer(Kx, Kx) / n**3
        A = np.zeros((k + 1, k + 1))
        A[:k, :k] = H
        A[:k, k] = A[k, :k] = 1.0
        step = np.linalg.lstsq(A, np.concatenate([-grad, [0.0]]), rcond=None)[0][:k]
        x = x + step
        if np.abs(step).max() <= 1e-15:
            break
    if np.any(x < 0) or not np.all(np.isfinite(x)):
        return None
    out = np.zeros_like(w)
    out[S] = x
    n = math.sqrt(max(float(out @ K @ out), 0.0))
    if n <= 1e-12:
        return None
    g = q + K @ out / n  # KKT: equal on the support, no smaller off it
    tol = 1e-9 * max(1.0, float(np.abs(g).max()))
    if np.ptp(g[S]) > tol or g.min() < g[S].min() - tol:
        return None
    return out if _objective(K, q, out) <= _objective(K, q, w) + 1e-13 else None


class CAGrad(Combiner):
    """CAGrad: K (m, m) -> weights (m,) of d = g₀ + (c‖g₀‖/‖g_w‖)·g_w, divided by 1 + c²
    (``rescale: 1``), 1 + c (``rescale: 2``) or not at all (``rescale: 0``).

    g₀ = Gᵀb is the mean gradient (b = 1/m), and g_w = Gᵀw* with
    w* = argmin_{w∈Δ} g_wᵀg₀ + c‖g₀‖·‖g_w‖, the dual of maximising the worst objective's
    improvement min_i g_iᵀd within the ball ‖d − g₀‖ ≤ c‖g₀‖. Posed on K/trace(K), so the
    weights do not depend on the gradients' common scale. Exact for m ≤ 2; an SOCP in cvxpy
    beyond. The preference is not used: the anchor is the plain mean."""

    name = "cagrad"
    uses_preference = False
    weights_on_simplex = False  # b + (c‖g₀‖/‖g_w‖)·w*: Σw = 1 + c‖g₀‖/‖g_w‖ before rescaling

    def __init__(
        self,
        c: float = 0.4,
        rescale: int = 1,
        cvxpy_solver: str = "CLARABEL",
        on_failure: str = "raise",
    ):
        super().__init__(on_failure)
        self.c = self.check_number("c", c, 0.0)
        if rescale not in (0, 1, 2) or isinstance(rescale, bool):
            raise ValueError(
                "combiner.rescale must be 0 (none), 1 (divide by 1 + c²) or 2 (divide by 1 + c). "
                f"Found {rescale!r}"
            )
        self.rescale = int(rescale)
        self.cvxpy_solver = self.check_cvxpy_solver(cvxpy_solver)
        self._programs = Programs(_InnerSOCP, self.cvxpy_solver)  # compiled once per m

    def _combine(self, losses, gram, preference):
        m = losses.size
        start = time.perf_counter()
        b = np.full(m, 1.0 / m)
        trace = float(np.trace(gram))
        Kn = gram / trace if trace > 0.0 else np.zeros_like(gram)
        Kb = Kn @ b
        g0 = math.sqrt(max(float(b @ Kb), 0.0))
        s = self.c * g0  # radius of the ball around g₀
        gw, w_star = 0.0, b
        if s > 1e-12 and m > 1:  # else the ball is a point: d = g₀
            if m == 2:
                w_star = _inner_two(Kb, Kn, s)
            else:
                w_star = self._programs(m).solve(Kn, Kb / s, self.cvxpy_solver)
            gw = math.sqrt(max(float(w_star @ Kn @ w_star), 0.0))
        # ‖g_w‖ ≈ 0 (relative to trace(K) = 1): the min-norm point is 0, a Pareto-stationary
        # point; the term (s/‖g_w‖)·g_w has no direction, and only g₀ is kept (as LibMTL's +1e-4)
        weights = b + (s / gw) * w_star if gw > 1e-9 else b.copy()
        weights /= (1.0, 1.0 + self.c**2, 1.0 + self.c)[self.rescale]
        return weights, {
            "g0_norm": g0,  # relative to √trace(K)
            "gw_norm": gw,
            "solve_ms": 1e3 * (time.perf_counter() - start),
        }
