"""Properties every combiner shares (the package's own checks, moo_lightning.testing, on every
combiner config): shapes, finiteness, simplex, equivariance, scale; and bad input."""

import numpy as np
import pytest
import torch

from moo_lightning import testing
from moo_lightning.combiners import (
    EPO,
    IMTLG,
    MGDA,
    PNG,
    LinearScalarization,
    SmoothTchebycheff,
    SolverError,
)
from tests.helpers import build_combiner, combiner_cases, combiner_names, degenerate_grams

CASES = (
    combiner_cases()
)  # every moo_lightning/conf/combiner/*.yaml (+ variants): a new combiner joins here


def test_every_combiner_config_is_covered():
    assert {c.partition("[")[0] for c in CASES} == set(combiner_names())
    assert {"ls", "mgda", "epo", "png", "stch"} <= set(combiner_names())


def _checked(outcome):
    if outcome is not None:  # the combiner's flags exempt it, or it is for other m
        pytest.skip(outcome)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("m", [2, 3, 5])
def test_shape_finite_simplex(case, m):
    _checked(testing.check_weights(build_combiner(case), m))


@pytest.mark.parametrize("case", CASES)
def test_returns_input_dtype(case):
    _checked(testing.check_input_dtype(build_combiner(case)))


@pytest.mark.parametrize("case", CASES)
def test_permutation_equivariance(case):
    _checked(testing.check_permutation(build_combiner(case)))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_gram_scale_invariance(case, scale):
    """Scaling every gradient by the same factor changes no weight, where promised."""
    _checked(testing.check_gram_scale(build_combiner(case), scale))


@pytest.mark.parametrize("case", CASES)
def test_combiners_that_do_not_read_the_losses_ignore_them(case):
    _checked(testing.check_reads_losses(build_combiner(case)))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", list(degenerate_grams(2)))
def test_degenerate_grams(case, kind):
    _checked(testing.check_degenerate(build_combiner(case), kind))


@pytest.mark.parametrize("case", CASES)
def test_single_objective(case):
    _checked(testing.check_single_objective(build_combiner(case)))


class _Broken(LinearScalarization):
    """Promises the simplex, returns weights that sum to 2."""

    def _combine(self, losses, gram, preference):
        w, diag = super()._combine(losses, gram, preference)
        return 2 * w, diag


def test_check_combiner_reports_each_check_and_catches_a_broken_promise():
    for stateful in ("uw", "gradvac", "nash_mtl"):  # state sized by m: a fresh copy per check
        assert testing.check_combiner(build_combiner(stateful))["weights, m = 5"] == "ok"
    used = EPO()  # its compiled programs are not copied: each copy compiles its own
    used(torch.tensor([0.5, 0.7]), torch.eye(2), [0.3, 0.7])
    assert testing.check_combiner(used)["weights, m = 3"] == "ok"
    report = testing.check_combiner(MGDA())
    assert report["weights, m = 3"] == "ok"
    assert set(report) >= {"permutation", "Gram × 1e-06", "zero Gram", "one objective"}
    assert "does not promise" in testing.check_combiner(PNG())["Gram × 1e-06"]
    with pytest.raises(AssertionError, match="promises weights on the simplex"):
        testing.check_combiner(_Broken())


@pytest.mark.parametrize(
    ("losses", "K", "pref", "match"),
    [
        ([0.5, 0.5], np.eye(2), [0.2, 0.3, 0.5], r"one entry per objective \(2\). Found 3"),
        ([0.5, 0.5], np.eye(2), [0.5, -0.5], "must be finite and > 0"),
        ([0.5, 0.5], np.eye(2), [0.0, 0.0], "must be finite and > 0"),
        ([0.5, float("nan")], np.eye(2), [0.5, 0.5], "losses must be finite"),
        ([0.5, 0.5], np.eye(3), [0.5, 0.5], r"Gram matrix must be \(2, 2\)"),
        ([0.5, 0.5], [[1.0, 0.5], [0.0, 1.0]], [0.5, 0.5], "symmetric"),
        ([0.5, 0.5], [[1.0, np.inf], [np.inf, 1.0]], [0.5, 0.5], "finite"),
    ],
)
def test_bad_input_messages(losses, K, pref, match):
    with pytest.raises(ValueError, match=match):
        EPO()(torch.tensor(losses), torch.tensor(K), pref)


@pytest.mark.parametrize("pref", [[0.1, 0.9], [0.5, -0.5, 1.0], 0.3])
def test_a_combiner_that_ignores_the_preference_neither_checks_nor_reads_it(pref):
    """MGDA on three objectives given train.yaml's two-entry default (or any other value): the
    weights are those at the uniform preference; EPO, which uses it, names the key to set."""
    losses = torch.tensor([1.0, 2.0, 3.0])
    K = torch.tensor(testing.random_gram(np.random.default_rng(0), 3))
    expected = MGDA()(losses, K, [1 / 3] * 3).weights
    torch.testing.assert_close(MGDA()(losses, K, pref).weights, expected)
    with pytest.raises(ValueError, match=r"set preference=\[\.\.\.\] with 3 positive entries"):
        EPO()(losses, K, [0.1, 0.9])


def test_scalar_preference_means_pair():
    w = LinearScalarization()(torch.tensor([1.0, 1.0]), None, 0.2).weights
    np.testing.assert_allclose(w.numpy(), [0.2, 0.8])
    with pytest.raises(ValueError, match=r"lie in \(0, 1\)"):
        LinearScalarization()(torch.tensor([1.0, 1.0]), None, 1.5)


def test_bad_constructor_values():
    with pytest.raises(ValueError, match="on_failure must be 'raise' or 'ls'"):
        MGDA(on_failure="ignore")
    with pytest.raises(ValueError, match="descent must be 'restricted' or 'relaxed'"):
        EPO(descent="loose")
    with pytest.raises(ValueError, match="cvxpy_solver 'GLPK' is not installed"):
        EPO(cvxpy_solver="GLPK")
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        PNG(alpha=0)
    with pytest.raises(ValueError, match="mu must be a finite number > 0"):
        SmoothTchebycheff(mu=0)


class _Failing(MGDA):
    def _combine(self, losses, gram, preference, **extra):
        raise SolverError("status 'infeasible'")


def test_failure_policy_raise_or_counted_fallback():
    args = (torch.tensor([0.5, 0.5]), torch.eye(2), [0.25, 0.75])
    with pytest.raises(SolverError):
        _Failing(on_failure="raise")(*args)
    with pytest.warns(RuntimeWarning, match="falling back"):
        res = _Failing(on_failure="ls")(*args)
    assert res.fallback and res.diagnostics["solver_failed"] == 1.0
    # MGDA ignores the preference (the run records none): its fallback is LS at equal weights
    np.testing.assert_allclose(res.weights.numpy(), [0.5, 0.5])


class _FailingLinalg(IMTLG):
    def _combine(self, losses, gram, preference, **extra):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")


def test_a_linear_algebra_failure_is_a_solver_failure():
    """An eigendecomposition or SVD that does not converge (IMTL-G, Aligned-MTL, ConFIG) follows
    ``on_failure`` like any failed solve: SolverError (status solver_failed) or LS, counted."""
    args = (torch.tensor([0.5, 0.5]), torch.eye(2), [0.25, 0.75])
    with pytest.raises(SolverError, match="linear algebra failed: Eigenvalues did not converge"):
        _FailingLinalg(on_failure="raise")(*args)
    with pytest.warns(RuntimeWarning, match="falling back to equal weights"):
        res = _FailingLinalg(on_failure="ls")(*args)
    assert res.fallback and res.diagnostics["solver_failed"] == 1.0


class _FailingEPO(EPO):
    def _combine(self, losses, gram, preference, **extra):
        raise SolverError("status 'infeasible'")


def test_the_fallback_of_a_preference_combiner_is_ls_at_that_preference():
    with pytest.warns(RuntimeWarning, match="falling back to the normalised preference"):
        res = _FailingEPO(on_failure="ls")(torch.tensor([0.5, 0.5]), torch.eye(2), [0.25, 0.75])
    np.testing.assert_allclose(res.weights.numpy(), [0.25, 0.75])


def test_gram_checks_keep_the_input_values():
    """A float64 CPU Gram (with or without autograd) is used as given when exactly symmetric and
    averaged with its transpose when asymmetric within round-off; the weights keep the losses'
    dtype."""
    K = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 3.0]])
    for gram in (torch.tensor(K), torch.tensor(K).requires_grad_(True), K):
        np.testing.assert_array_equal(MGDA()._check_gram(gram, 3), K)
    skew = K.copy()
    skew[0, 1] += 1e-9
    np.testing.assert_array_equal(MGDA()._check_gram(torch.tensor(skew), 3), 0.5 * (skew + skew.T))
    for dtype in (torch.float32, torch.float64):
        res = MGDA()(torch.ones(3, dtype=dtype), torch.tensor(K), [1 / 3] * 3)
        assert res.weights.dtype == dtype


def test_a_gram_given_as_a_python_list_keeps_its_float64_values():
    # a list of Python floats is read as float64, not through a float32 tensor (0.1 would
    # become 0.10000000149...): the same weights as for the float64 array
    losses, K = torch.tensor([0.1, 0.7], dtype=torch.float64), [[0.3, -0.1], [-0.1, 0.2]]
    for comb in (MGDA(), EPO()):
        from_list = comb(losses, K, [0.3, 0.7], step=0)
        from_array = comb(losses, np.array(K), np.array([0.3, 0.7]), step=0)
        assert torch.equal(from_list.weights, from_array.weights)


@pytest.mark.parametrize(
    ("pref", "m", "allowed"),
    [
        ("abc", 2, "a number r1 in (0, 1), meaning (r1, 1 - r1), or a list of numbers > 0"),
        (["a", "b"], None, "a number r1 in (0, 1), meaning (r1, 1 - r1), or a list"),
        ([[0.1], [0.2, 0.7]], 3, "preference must be a list of numbers > 0, one per objective (3)"),
        ({"a": 1}, 2, "one per objective (2), e.g. 0.2 or [0.2,0.8]"),
    ],
)
def test_a_preference_that_is_no_number_names_the_key_and_what_is_allowed(pref, m, allowed):
    """preference=abc was "could not convert string to float: 'abc'": nothing named the key."""
    from moo_lightning.combiners.base import as_preference

    with pytest.raises(ValueError) as info:
        as_preference(pref, m)
    assert str(info.value).startswith("preference must be ") and allowed in str(info.value)
    assert str(info.value).endswith(f"Found {pref!r}")
    with pytest.raises(ValueError, match=r"^module.preferences\[1\] must be "):
        as_preference(pref, m, key="module.preferences[1]")
