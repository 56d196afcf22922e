"""Pareto Navigation Gradient Descent (Ye & Liu 2022): the combiner and its dual box QP."""

from __future__ import annotations

import time

import cvxpy as cp
import numpy as np

from moo_lightning.combiners.base import Combiner, SolverError, normalised_gram
from moo_lightning.combiners.criteria import (
    Criterion,
    NonUniformity,
    ParameterCriterion,
    criterion_gradient,
)
from moo_lightning.combiners.mgda import min_norm_weights
from moo_lightning.combiners.programs import ACCEPTED, Program, Programs, psd_factor, solve_program

# --- the dual box QP: min_{λ≥0} ½ λᵀKλ + λᵀq ---


def box_qp_two(K: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact min_{λ ≥ 0} ½λᵀKλ + qᵀλ for m ≤ 2: the optimum of each active set (none, {1}, {2},
    both) is feasible by construction; the one with the lowest objective is the global optimum
    (the first of equal ones, in that order). Scalar arithmetic: this runs once per step."""
    if q.size == 1:
        k, b = float(K[0, 0]), float(q[0])
        lam = max(0.0, -b / k) if k > 0 else 0.0
        return np.array([lam if 0.5 * k * lam * lam + b * lam < 0.0 else 0.0])
    (a, c), (_, d) = K.tolist()
    q1, q2 = q.tolist()
    best, best_value = (0.0, 0.0), 0.0
    if a > 0:
        x = max(0.0, -q1 / a)
        value = 0.5 * a * x * x + q1 * x
        if value < best_value:
            best, best_value = (x, 0.0), value
    if d > 0:
        y = max(0.0, -q2 / d)
        value = 0.5 * d * y * y + q2 * y
        if value < best_value:
            best, best_value = (0.0, y), value
    det = a * d - c * c
    if det > 1e-14 * max(a * d, 1e-300):  # both active: K λ = −q by Cramer's rule
        x, y = (c * q2 - d * q1) / det, (c * q1 - a * q2) / det
        if x >= 0.0 and y >= 0.0:
            value = 0.5 * (a * x * x + 2.0 * c * x * y + d * y * y) + q1 * x + q2 * y
            if value < best_value:
                best = (x, y)
    return np.array(best)


class _DualQP(Program):
    """min_{λ≥0} ½‖Lᵀλ‖² + qᵀλ with K = LLᵀ, compiled once for m objectives (DPP)."""

    def __init__(self, m: int):
        self.lam = cp.Variable(m, nonneg=True)
        self.L = cp.Parameter((m, m))
        self.q = cp.Parameter(m)
        self.problem = cp.Problem(
            cp.Minimize(0.5 * cp.sum_squares(self.L.T @ self.lam) + self.q @ self.lam)
        )

    def priming(self):
        m = self.q.size
        yield self.problem, {self.L: np.eye(m), self.q: np.ones(m)}

    def solve(self, K: np.ndarray, q: np.ndarray, solver: str) -> np.ndarray:
        self.L.value, self.q.value = psd_factor(K), q
        status = solve_program(self.problem, solver)
        if status not in ACCEPTED:
            raise SolverError(f"PNG dual QP returned status {status!r}")
        return np.clip(self.lam.value, 0.0, None)


class PNG(Combiner):
    """PNG: losses (m,), Gram K (m, m), preference (m,) -> coefficients w = ∂F/∂ℓ + λ (m,) of
    the direction v = Gᵀw, with λ the dual box-QP solution; φ = α·g(θ) when g(θ) > e, else the
    constraint is off (λ = 0, plain descent on F). Pass ``criterion_grad`` to supply ∂F/∂ℓ
    directly (energy ensembles); otherwise it comes from autograd of ``criterion``. The dual is
    solved exactly for m ≤ 2 and with cvxpy (``cvxpy_solver``, compiled once) beyond."""

    name = "png"
    reads_losses = True
    uses_criterion_grad = True
    weights_on_simplex = False  # λ ≥ 0 scales a direction, it is no convex combination
    unique_weights = False

    @property
    def gram_scale_invariant(self) -> bool:
        return self.e == 0.0  # the threshold e compares g(θ) with an absolute number

    def __init__(
        self,
        criterion: Criterion | None = None,
        alpha: float = 0.5,
        e: float = 1e-3,
        cvxpy_solver: str = "CLARABEL",
        on_failure: str = "raise",
    ):
        super().__init__(on_failure)
        self.cvxpy_solver = self.check_cvxpy_solver(cvxpy_solver)
        self._programs = Programs(_DualQP, cvxpy_solver)  # compiled once per m, not state
        alpha = self.check_number("alpha", alpha, 0.0, strict=True)
        e = self.check_number("e", e, 0.0)
        if criterion is not None and not callable(criterion):
            raise ValueError(
                f"combiner.criterion must be callable (losses, preference) -> scalar. "
                f"Found {type(criterion).__name__}"
            )
        self.criterion = criterion if criterion is not None else NonUniformity()
        self.alpha = float(alpha)
        self.e = float(e)

    def _combine(self, losses, gram, preference, criterion_grad=None):
        m = losses.size
        diag: dict[str, float] = {}
        on_parameters = isinstance(criterion_grad, ParameterCriterion)
        if criterion_grad is None:
            diag["F"], f = criterion_gradient(self.criterion, losses, preference)
            if hasattr(self.criterion, "clamped"):  # a criterion that assumes losses > 0
                diag["clamped_losses"] = float(self.criterion.clamped(losses))
        elif not on_parameters:  # ∂F/∂ℓ, checked (shape, finite) by the base class
            f = criterion_grad
        start = time.perf_counter()
        _, g, _, _ = min_norm_weights(gram)
        # g below round-off of the Gram's scale is a Pareto-stationary point, not a constraint
        active = g > max(self.e, 1e-12 * float(np.max(np.diag(gram))))
        if active:
            phi = self.alpha * g
            Kn, scale = normalised_gram(gram)  # λ is invariant to rescaling K, q together
            # q_i = ∇ℓ_iᵀ∇F − φ: from the Gram for a criterion of the losses (∇F = Gᵀ ∂F/∂ℓ),
            # given directly for a criterion of the parameters
            if on_parameters:
                q = (criterion_grad.cross - phi) / scale
            else:
                q = Kn @ f - phi / scale
            if m <= 2:
                lam = box_qp_two(Kn, q)
            else:
                lam = self._programs(m).solve(Kn, q, self.cvxpy_solver)
        else:
            phi, lam = 0.0, np.zeros(m)
        diag.update(
            {
                "g": g,
                "phi": phi,
                "constraint_active": float(active),
                "solve_ms": 1e3 * (time.perf_counter() - start),
            }
        )
        diag.update({f"lambda_{i}": float(v) for i, v in enumerate(lam)})
        if on_parameters:  # v = ∇F + Gᵀλ: the module adds ∇F with this weight
            diag["criterion_weight"] = 1.0
            return lam, diag
        return f + lam, diag
