import cvxpy as cp
import numpy as np
import pytest
import torch

from moo_lightning.combiners import EPO, SolverError
from moo_lightning.combiners.epo import non_uniformity, solve_lp_on_segment
from tests.helpers import random_problem


def run(epo, losses, K, pref):
    return epo(torch.as_tensor(losses), torch.as_tensor(K), pref)


def test_non_uniformity_zero_on_the_ray_positive_off_it():
    pref = np.array([0.2, 0.8])
    mu, a = non_uniformity(np.array([0.8, 0.2]), pref)  # r1ℓ1 = r2ℓ2
    assert abs(mu) < 1e-15 and np.allclose(a, 0)
    mu, _ = non_uniformity(np.array([0.5, 0.5]), pref)
    assert mu > 0


@pytest.mark.parametrize("descent", ["restricted", "relaxed"])
@pytest.mark.parametrize("m", [2, 3, 4])
def test_descent_mode_decreases_no_objective(descent, m):
    """On the ray (μ = 0) EPO's direction satisfies Kw ≥ 0: no objective increases."""
    rng = np.random.default_rng(m)
    epo = EPO(descent=descent)
    for _ in range(100):
        _, pref, K = random_problem(rng, m)
        losses = 1.0 / pref  # exactly on the ray
        res = run(epo, losses, K, pref)
        assert res.diagnostics["balance_mode"] == 0.0
        w = res.weights.numpy()
        assert np.all(K @ w >= -1e-6 * np.max(np.diag(K)))


def _lp_value_and_slope(epo, losses, K, pref):
    """The LP objective of the mode EPO is in, as a function of w (to compare ties fairly)."""
    mu, a = non_uniformity(losses, pref)
    Kn = K / np.max(np.diag(K))
    return (Kn @ a) if mu > epo.eps else Kn.sum(0)


@pytest.mark.parametrize("descent", ["restricted", "relaxed"])
def test_exact_two_objective_solver_matches_cvxpy_on_1000_grams(descent):
    rng = np.random.default_rng(7)
    exact, solver = EPO(solver="exact", descent=descent), EPO(solver="cvxpy", descent=descent)
    compared = 0
    for k in range(1000):
        losses, pref, K = random_problem(rng, 2)
        if k % 4 == 0:
            losses = 1.0 / pref  # exercise descent mode too
        try:
            w_cvx = run(solver, losses, K, pref).weights.numpy()
        except Exception:
            # infeasible LP: the exact solver must agree that it is infeasible
            with pytest.raises(Exception, match="infeasible"):
                run(exact, losses, K, pref)
            continue
        w_ex = run(exact, losses, K, pref).weights.numpy()
        obj = _lp_value_and_slope(solver, losses, K, pref)
        # optimal values agree to 1e-6; weights agree when the LP optimum is unique
        assert abs(obj @ w_ex - obj @ w_cvx) <= 1e-6 * max(1.0, np.abs(obj).max())
        if abs(obj[0] - obj[1]) > 1e-3:
            np.testing.assert_allclose(w_ex, w_cvx, atol=1e-6)
            compared += 1
    assert compared > 800


def test_segment_lp_small_cases():
    # maximise t subject to t ≥ 0.3 and t ≤ 0.6 (written as rows of A w ≥ b)
    w = solve_lp_on_segment(
        np.array([1.0, 0.0]), np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([0.3, -0.6])
    )
    np.testing.assert_allclose(w, [0.6, 0.4])
    assert (
        solve_lp_on_segment(np.array([1.0, 0.0]), np.array([[1.0, 0.0]]), np.array([2.0])) is None
    )


@pytest.mark.parametrize(
    ("losses", "K", "pref", "expected", "mode"),
    [
        # far from the ray, the larger weighted loss (ℓ2) gets all the weight
        ([1.0, 1.0], np.eye(2), [0.2, 0.8], [0.0, 1.0], 1.0),
        ([1.0, 1.0], np.eye(2), [0.8, 0.2], [1.0, 0.0], 1.0),
        # on the ray with orthogonal gradients: 1ᵀKw = 1 for all w, the tie's middle
        ([1.0, 1.0], np.eye(2), [0.5, 0.5], [0.5, 0.5], 0.0),
        # on the ray, conflicting gradients: maximise the total decrease
        # (maximise w1 subject to Kw ≥ 0, i.e. 1/3 ≤ w1 ≤ 1/2)
        ([1.0, 1.0], [[2.0, -1.0], [-1.0, 1.0]], [0.5, 0.5], [0.5, 0.5], 0.0),
    ],
)
@pytest.mark.parametrize("solver", ["exact", "cvxpy"])
def test_value_table(losses, K, pref, expected, mode, solver):
    res = run(EPO(solver=solver), np.array(losses), np.array(K), pref)
    np.testing.assert_allclose(res.weights.numpy(), expected, atol=1e-6)
    assert res.diagnostics["balance_mode"] == mode


def test_programs_are_dpp_and_compiled_once():
    epo = EPO(solver="cvxpy")
    rng = np.random.default_rng(0)
    losses, pref, K = random_problem(rng, 2)
    run(epo, losses, K, pref)
    prog = epo.programs(2)
    assert prog.balance.is_dpp() and prog.descent.is_dpp()
    cached = prog.balance._cache.param_prog
    assert cached is not None
    for _ in range(30):
        losses, pref, K = random_problem(rng, 2)
        run(epo, losses * 3, K, pref)
    assert prog.balance._cache.param_prog is cached  # same compiled program, re-used


def test_clamped_losses_are_counted_not_hidden():
    """EPO assumes ℓ > 0: losses below its floor (1e-12) are raised to it and counted at every
    step in ``clamped_losses`` (0 when none were)."""
    res = run(EPO(), np.array([0.0, 0.5]), np.eye(2), [0.5, 0.5])
    assert res.diagnostics["clamped_losses"] == 1.0
    assert torch.isfinite(res.weights).all()
    res = run(EPO(), np.array([-3.0, 1e-13, 0.5]), np.eye(3), [0.2, 0.3, 0.5])
    assert res.diagnostics["clamped_losses"] == 2.0
    assert (
        run(EPO(), np.array([0.4, 0.5]), np.eye(2), [0.5, 0.5]).diagnostics["clamped_losses"] == 0.0
    )


def _break_solver(monkeypatch, epo, m=3):
    prog = epo.programs(m)

    def solve(**kwargs):
        prog.balance._status = cp.INFEASIBLE

    monkeypatch.setattr(prog.balance, "solve", solve)


def test_solver_failure_follows_policy(monkeypatch):
    losses, pref, K = np.array([1.0, 1.0, 1.0]), [0.2, 0.3, 0.5], np.eye(3)  # balance mode
    lenient = EPO(solver="cvxpy", on_failure="ls")
    _break_solver(monkeypatch, lenient)
    with pytest.warns(RuntimeWarning, match="falling back"):
        res = run(lenient, losses, K, pref)
    assert res.fallback
    np.testing.assert_allclose(res.weights.numpy(), [0.2, 0.3, 0.5])

    strict = EPO(solver="cvxpy", on_failure="raise")
    _break_solver(monkeypatch, strict)
    with pytest.raises(SolverError, match="status 'infeasible'"):
        run(strict, losses, K, pref)


def test_a_failed_cvxpy_solve_of_two_objectives_is_solved_exactly_and_counted(monkeypatch):
    # CLARABEL once failed on a near-degenerate LP in a Multi-MNIST run: for m = 2 the same LP
    # has an exact solution, so the step goes on with it (no fallback to the preference)
    losses, pref, K = np.array([1.0, 1.0]), [0.3, 0.7], np.array([[2.0, 0.5], [0.5, 1.0]])
    epo = EPO(solver="cvxpy", on_failure="raise")
    _break_solver(monkeypatch, epo, m=2)
    res = run(epo, losses, K, pref)
    exact = run(EPO(solver="exact"), losses, K, pref)
    assert not res.fallback and res.recovered
    np.testing.assert_allclose(res.weights.numpy(), exact.weights.numpy())


def test_first_solve_of_a_fresh_combiner_equals_a_cached_solve():
    """Resumed runs start with fresh programs; their solves must match a long run's bit for bit."""
    rng = np.random.default_rng(4)
    warm = EPO()
    run(warm, np.array([1.0, 2.0]), np.eye(2), [0.1, 0.9])
    for _ in range(20):
        losses, pref, K = random_problem(rng, 2)
        assert torch.equal(run(EPO(), losses, K, pref).weights, run(warm, losses, K, pref).weights)
