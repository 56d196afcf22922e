"""Compiled cvxpy programs shared by the combiners that solve one (EPO's two LPs, PNG's dual QP,
CAGrad's inner SOCP): built once per number of objectives m, checked DPP, primed, then re-solved
each step by substituting parameter values.

Priming matters for exact resumes: cvxpy builds a program's first solve by full compilation and
later ones by parameter substitution, and the two differ in the last bits. Solving each program
once with placeholder values when it is built sends every real solve down the substitution path,
so a fresh (e.g. resumed) process takes the same steps as a long-running one.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import cvxpy as cp
import numpy as np

#: solver statuses whose solution is used (an inaccurate one is counted by the caller)
ACCEPTED = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)


class Program:
    """Base of a combiner's compiled program set for m objectives. Subclasses create their
    Variables, Parameters and Problems in ``__init__`` and list, in :meth:`priming`, each
    problem with placeholder values for its parameters (any values; the solve only compiles)."""

    def priming(self) -> Iterable[tuple[cp.Problem, dict[cp.Parameter, object]]]:
        raise NotImplementedError


P = TypeVar("P", bound=Program)


class Programs(Generic[P]):
    """The programs of one combiner, one per m, built by ``build(m)`` on first use."""

    def __init__(self, build: Callable[[int], P], solver: str):
        self._build = build
        self.solver = solver
        self._by_m: dict[int, P] = {}

    def __call__(self, m: int) -> P:
        if m not in self._by_m:
            program = self._build(m)
            for problem, values in program.priming():
                if not problem.is_dpp():  # else cvxpy would recompile on every step
                    raise RuntimeError(f"{type(program).__name__} is not DPP")
                for parameter, value in values.items():
                    parameter.value = value
                try:
                    problem.solve(solver=self.solver)
                except cp.error.SolverError:
                    pass  # compiled all the same; priming needs no solution
                if problem._cache.param_prog is None:  # not compiled: resumes would differ
                    warnings.warn(
                        f"{type(program).__name__} (m = {m}) was not compiled while priming; "
                        "a resumed run may differ from the uninterrupted one in the last bits",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            self._by_m[m] = program
        return self._by_m[m]

    def __deepcopy__(self, memo) -> Programs[P]:
        """A copy without the compiled programs (cvxpy's solver caches cannot be copied): it
        compiles and primes its own on first use, and primed programs solve bit for bit alike."""
        return Programs(copy.deepcopy(self._build, memo), self.solver)

    def built(self) -> list[int]:
        """The numbers of objectives with a compiled program (for tests and benchmarks)."""
        return sorted(self._by_m)


def solve_program(problem: cp.Problem, solver: str) -> str:
    """Solve with new parameter values; the status, or ``'error (<message>)'`` when the solver
    raised. Accept the solution only when the status is in :data:`ACCEPTED`."""
    try:
        problem.solve(solver=solver)
    except cp.error.SolverError as err:
        return f"error ({err})"
    return problem.status


def psd_factor(gram: np.ndarray) -> np.ndarray:
    """L with L·Lᵀ = K for a symmetric PSD K (eigenvalues below 0 from round-off clipped), so a
    quadratic form wᵀKw enters a DPP program as ‖Lᵀw‖²."""
    vals, vecs = np.linalg.eigh(gram)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))
