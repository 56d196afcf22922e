"""Exact Pareto Optimal search (Mahapatra & Rajan, ICML 2020)."""

from __future__ import annotations

import time
from functools import partial

import cvxpy as cp
import numpy as np

from moo_lightning.combiners.base import Combiner, SolverError, normalised_gram
from moo_lightning.combiners.programs import ACCEPTED, Program, Programs, solve_program

# EPO assumes losses > 0 (the non-uniformity takes log(r⊙ℓ)): losses below this floor are raised
# to it and counted in the diagnostic ``clamped_losses``
LOSS_FLOOR = 1e-12


def non_uniformity(losses: np.ndarray, preference: np.ndarray) -> tuple[float, np.ndarray]:
    """μ = Σ p_i log(m p_i), p = r⊙ℓ / Σ r⊙ℓ; also returns the adjustment a = r ⊙ (log(m p) − μ)."""
    m = losses.size
    rl = preference * losses
    p = rl / rl.sum()
    logmp = np.log(m * p)
    mu = float(p @ logmp)
    return mu, preference * (logmp - mu)


def solve_lp_on_segment(objective: np.ndarray, A: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Exact m = 2 LP: maximise objectiveᵀw over w = (t, 1 − t), t ∈ [0, 1], with A w ≥ b.

    Each row cuts [0, 1] to an interval; the optimum of a linear objective sits at an end of the
    intersection. Returns None when the constraints are infeasible.
    """
    scale = max(float(np.abs(A).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-300)
    tol = 1e-12 * scale
    lo, hi = 0.0, 1.0
    for (a0, a1), bi in zip(A, b, strict=True):
        slope, rhs = a0 - a1, bi - a1  # row reads: slope · t ≥ rhs
        if abs(slope) <= tol:
            if rhs > tol:
                return None
        elif slope > 0:
            lo = max(lo, rhs / slope)
        else:
            hi = min(hi, rhs / slope)
    if lo > hi + 1e-12:
        return None
    lo, hi = min(lo, hi), max(lo, hi)
    gain = objective[0] - objective[1]
    obj_scale = max(float(np.abs(objective).max()), 1e-300)
    if abs(gain) <= 1e-12 * obj_scale:
        t = 0.5 * (lo + hi)  # the whole feasible segment is optimal: take its middle
    else:
        t = hi if gain > 0 else lo
    return np.array([t, 1.0 - t])


class _EPOPrograms(Program):
    """The two EPO linear programs for m objectives, compiled once (DPP) and re-solved with new
    parameter values each step. Rows that balance mode leaves unconstrained are zeroed through
    the parameters (A_i = 0, b_i = 0), so no ±inf ever reaches the solver."""

    def __init__(self, m: int, restricted: bool):
        self.m = m
        self.w = cp.Variable(m, nonneg=True)
        # balance mode
        self.c = cp.Parameter(m)
        self.A = cp.Parameter((m, m))
        self.b = cp.Parameter(m)
        self.balance = cp.Problem(
            cp.Maximize(self.c @ self.w), [cp.sum(self.w) == 1, self.A @ self.w >= self.b]
        )
        # descent mode
        self.K = cp.Parameter((m, m))
        self.colsum = cp.Parameter(m)
        self.c_descent = cp.Parameter(m)
        self.floor = cp.Parameter()  # min(max_i c_i, 0), its own Parameter so the problem is DPP
        cons = [cp.sum(self.w) == 1, self.K @ self.w >= 0]
        if restricted:
            cons.append(self.c_descent @ self.w >= self.floor)
        self.descent = cp.Problem(cp.Maximize(self.colsum @ self.w), cons)

    def priming(self):
        eye, ones = np.eye(self.m), np.ones(self.m)
        yield self.balance, {self.c: ones, self.A: eye, self.b: np.zeros(self.m)}
        yield self.descent, {self.K: eye, self.colsum: ones, self.c_descent: ones, self.floor: 0.0}


class EPO(Combiner):
    """EPO search: preference r (m,), losses ℓ > 0 (m,), Gram K (m, m) -> w ∈ Δ (m,).

    Balance mode (μ > eps) maximises wᵀKa subject to the per-objective constraints of
    Mahapatra & Rajan 2020, §4.3; descent mode maximises 1ᵀKw subject to Kw ≥ 0 and, when
    ``descent='restricted'``, wᵀc ≥ min(max c, 0). ``solver='cvxpy'`` solves the LPs with
    ``cvxpy_solver`` (an installed one: CLARABEL by default); ``solver='exact'`` uses the exact
    segment solver (m = 2 only); ``solver='auto'`` picks exact for m = 2, cvxpy otherwise.
    """

    name = "epo"
    reads_losses = True

    def __init__(
        self,
        eps: float = 1e-4,
        descent: str = "restricted",
        solver: str = "cvxpy",
        cvxpy_solver: str = "CLARABEL",
        on_failure: str = "raise",
    ):
        super().__init__(on_failure)
        if descent not in ("restricted", "relaxed"):
            raise ValueError(
                f"combiner.descent must be 'restricted' or 'relaxed'. Found {descent!r}"
            )
        if solver not in ("cvxpy", "exact", "auto"):
            raise ValueError(
                f"combiner.solver must be 'cvxpy', 'exact' or 'auto'. Found {solver!r}"
            )
        if solver != "exact":
            self.check_cvxpy_solver(cvxpy_solver)
        self.eps = self.check_number("eps", eps, 0.0)
        self.descent = descent
        self.solver = solver
        self.cvxpy_solver = cvxpy_solver
        restricted = descent == "restricted"
        # compiled once per m (not per-step state)
        self._programs = Programs(partial(_EPOPrograms, restricted=restricted), cvxpy_solver)

    def programs(self, m: int) -> _EPOPrograms:
        """The compiled LPs for m objectives (built and primed on first use)."""
        return self._programs(m)

    def supports(self, m: int) -> bool:
        return self.solver != "exact" or m == 2

    def _exact_descent(self, gram: np.ndarray, c: np.ndarray) -> np.ndarray | None:
        """The descent LP for m = 2, solved exactly on the segment."""
        rows, rhs = [gram], [np.zeros(2)]
        if self.descent == "restricted":
            rows.append(c[None, :])
            rhs.append(np.array([min(float(c.max()), 0.0)]))
        return solve_lp_on_segment(gram.sum(axis=0), np.vstack(rows), np.concatenate(rhs))

    def _combine(self, losses, gram, preference):
        m = losses.size
        clamped = float(np.sum(losses < LOSS_FLOOR))
        losses = np.maximum(losses, LOSS_FLOOR)  # EPO's log needs ℓ > 0; counted in diagnostics
        mu, a = non_uniformity(losses, preference)
        gram, _ = normalised_gram(gram)
        c = gram @ a
        balance = mu > self.eps
        if balance:
            constrained = c <= 0  # J = {i : c_i > 0} is left unconstrained
            if constrained.all():
                rhs = np.zeros(m)
            else:
                rhs = np.where(constrained, c, 0.0)
                rhs[np.argmax(preference * losses)] = 0.0
                constrained = constrained.copy()
                constrained[np.argmax(preference * losses)] = True
            A = gram * constrained[:, None]
            rhs = rhs * constrained
        exact = self.solver == "exact" or (self.solver == "auto" and m == 2)
        if self.solver == "exact" and m != 2:
            raise ValueError(
                f"combiner.solver='exact' supports m = 2 objectives only. Found m = {m}"
            )

        retried = False
        if exact:
            start = time.perf_counter()
            w = solve_lp_on_segment(c, A, rhs) if balance else self._exact_descent(gram, c)
            status = "optimal" if w is not None else "infeasible"
            solve_ms = 1e3 * (time.perf_counter() - start)
        else:
            prog = self.programs(m)
            if balance:
                prog.c.value, prog.A.value, prog.b.value = c, A, rhs
                problem = prog.balance
            else:
                prog.K.value, prog.colsum.value = gram, gram.sum(axis=0)
                prog.c_descent.value, prog.floor.value = c, min(float(c.max()), 0.0)
                problem = prog.descent
            start = time.perf_counter()
            status = solve_program(problem, self.cvxpy_solver)
            w = prog.w.value if status in ACCEPTED else None
            if w is None and m == 2:
                # the interior-point solver can fail on a near-degenerate LP (seen with CLARABEL
                # in descent mode at μ ≈ 1e-9): for two objectives the same LP has an exact
                # solution, used instead and counted in the diagnostics
                exact = True
                w = solve_lp_on_segment(c, A, rhs) if balance else self._exact_descent(gram, c)
                status = f"{status}; solved exactly" if w is not None else status
                retried = True
            solve_ms = 1e3 * (time.perf_counter() - start)  # the cvxpy call (and the retry)
        if w is None:
            mode = "balance" if balance else "descent"
            raise SolverError(f"EPO {mode} LP returned status {status!r} (mu={mu:.3g})")
        w = np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
        w /= w.sum()
        diag = {
            "mu": mu,
            "balance_mode": float(balance),
            "solve_ms": solve_ms,
            "exact_solver": float(exact),
            "inaccurate": float(status == cp.OPTIMAL_INACCURATE),
            "recovered": float(retried),  # counted by the module (combiner_recoveries)
            "clamped_losses": clamped,  # losses raised to LOSS_FLOOR at this step
        }
        return w, diag
