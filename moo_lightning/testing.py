"""The promises a combiner declares, checked on random and degenerate problems: for your own
combiner, the same checks this package's test suite runs on every one of its own.

    from moo_lightning.testing import check_combiner

    print(check_combiner(MyCombiner()))  # {check: "ok" | why it does not apply}; raises on a break

Each ``check_*`` raises AssertionError naming the broken promise, returns None when the check
passed, or a string saying why it does not apply to this combiner (its flags exempt it, or it
does not handle that many objectives). Problems are drawn from a seeded generator: a failure is
reproduced by running the check again.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from moo_lightning.combiners.base import Combiner


def random_gram(rng: np.random.Generator, m: int, rank: int | None = None) -> np.ndarray:
    """A PSD Gram matrix (m, m) of m gradients in ``rank`` (default m + 2) dimensions."""
    A = rng.standard_normal((m, rank or m + 2))
    return A @ A.T


def random_problem(rng: np.random.Generator, m: int):
    """Positive losses, a positive preference on the simplex and a PSD Gram matrix of random
    rank."""
    losses = rng.uniform(0.05, 2.0, m)
    pref = rng.uniform(0.05, 1.0, m)
    K = random_gram(rng, m, rank=int(rng.integers(1, m + 3)))
    return losses, pref / pref.sum(), K


def degenerate_grams(m: int) -> dict[str, np.ndarray]:
    """Gram matrices that break naive solvers: all zero, identical gradients, (anti)parallel
    gradients, and norms of 1e6 and 1e-6."""
    g = np.arange(1.0, 4.0)
    return {
        "zero": np.zeros((m, m)),
        "identical": np.outer(np.ones(m), np.ones(m)) * (g @ g),
        "rank1": np.outer(np.linspace(1, -1, m), np.linspace(1, -1, m)),
        "huge": 1e12 * (np.eye(m) + 0.5),
        "tiny": 1e-12 * (np.eye(m) + 0.5),
    }


def _call(comb: Combiner, losses, K, pref) -> torch.Tensor:
    # one step: a combiner with random weights draws the same numbers for every call here
    return comb(torch.as_tensor(losses), torch.as_tensor(K), pref, step=0).weights


def _effect(comb: Combiner, w: np.ndarray, K: np.ndarray) -> np.ndarray:
    """What must be unique: the weights, or (weights unique only up to K's null space, as PNG's
    dual) the direction's effect on the objectives, Kw."""
    return w if comb.unique_weights else K @ w


def check_weights(comb: Combiner, m: int, problems: int = 20) -> str | None:
    """(m,) finite float64 weights for float64 inputs; on the simplex where promised."""
    if not comb.supports(m):
        return f"{comb.name} does not handle {m} objectives"
    rng = np.random.default_rng(m)
    for k in range(problems):
        losses, pref, K = random_problem(rng, m)
        w = _call(comb, losses, K, pref)
        assert w.shape == (m,), f"{comb.name}: weights of shape {tuple(w.shape)} for m = {m}"
        assert torch.isfinite(w).all(), f"{comb.name}: non-finite weights (m = {m}, problem {k})"
        assert w.dtype == torch.float64, f"{comb.name}: {w.dtype} weights for float64 input"
        if comb.weights_on_simplex:
            assert (w >= -1e-9).all() and abs(float(w.sum()) - 1) < 1e-6, (
                f"{comb.name} promises weights on the simplex: {w.tolist()} (m = {m})"
            )
    return None


def check_input_dtype(comb: Combiner) -> str | None:
    """Weights come back in the dtype of the losses (float32 here)."""
    w = comb(torch.tensor([0.5, 0.7], dtype=torch.float32), torch.eye(2), [0.3, 0.7]).weights
    assert w.dtype == torch.float32, f"{comb.name}: {w.dtype} weights for float32 losses"
    return None


def check_permutation(comb: Combiner, problems: int = 20) -> str | None:
    """Permuting the objectives (losses, Gram rows and columns, preference) permutes the
    weights."""
    if not comb.supports(3):
        return f"{comb.name} does not handle 3 objectives"
    if comb.random_weights:
        return f"{comb.name} draws random weights: a permutation draws other numbers"
    rng = np.random.default_rng(1)
    for _ in range(problems):
        losses, pref, _ = random_problem(rng, 3)
        K = random_gram(rng, 3)  # full rank: a unique optimum to compare
        perm = rng.permutation(3)
        w = _effect(comb, _call(comb, losses, K, pref).numpy(), K)
        Kp = K[np.ix_(perm, perm)]
        wp = _effect(comb, _call(comb, losses[perm], Kp, pref[perm]).numpy(), Kp)
        np.testing.assert_allclose(
            wp, w[perm], atol=2e-5 * max(1, np.abs(w).max()), err_msg=f"{comb.name}: permutation"
        )
    return None


def check_gram_scale(comb: Combiner, scale: float, problems: int = 20) -> str | None:
    """Scaling every gradient by the same factor changes no weight, where promised."""
    if not comb.gram_scale_invariant:
        return f"{comb.name} does not promise it (an absolute threshold on the gradients)"
    rng = np.random.default_rng(2)
    for _ in range(problems):
        losses, pref, K = random_problem(rng, 2)
        w = _effect(comb, _call(comb, losses, K, pref).numpy(), K)
        ws = _effect(comb, _call(comb, losses, scale * K, pref).numpy(), K)
        np.testing.assert_allclose(
            ws, w, atol=2e-5 * max(1, np.abs(w).max()), err_msg=f"{comb.name}: Gram × {scale:g}"
        )
    return None


def check_degenerate(comb: Combiner, kind: str) -> str | None:
    """Finite weights (on the simplex where promised) for one of :func:`degenerate_grams`."""
    w = _call(comb, np.array([0.4, 0.6]), degenerate_grams(2)[kind], [0.3, 0.7])
    assert torch.isfinite(w).all(), f"{comb.name}: non-finite weights for a {kind} Gram matrix"
    if comb.weights_on_simplex:
        assert abs(float(w.sum()) - 1) < 1e-6, f"{comb.name}: Σw = {float(w.sum())} ({kind})"
    return None


def check_reads_losses(comb: Combiner, problems: int = 10) -> str | None:
    """``reads_losses`` False is a promise: the weights depend on the Gram matrix, the preference
    and the number of objectives only, so other losses (negative ones too, as log ℓ for ℓ < 1)
    give the same weights (fresh copies of the combiner, the same step)."""
    if comb.reads_losses:
        return f"{comb.name} reads the losses"
    if not comb.supports(3):
        return f"{comb.name} does not handle 3 objectives"
    rng = np.random.default_rng(4)
    for _ in range(problems):
        losses, pref, K = random_problem(rng, 3)
        other = rng.uniform(-3.0, 3.0, 3)
        w = _call(copy.deepcopy(comb), losses, K, pref).numpy()
        wo = _call(copy.deepcopy(comb), other, K, pref).numpy()
        np.testing.assert_array_equal(
            wo, w, err_msg=f"{comb.name} declares reads_losses=False, but other losses move it"
        )
    return None


def check_single_objective(comb: Combiner) -> str | None:
    """One objective gives one finite weight."""
    if not comb.supports(1):
        return f"{comb.name} does not handle 1 objective"
    w = comb(torch.tensor([0.5]), torch.tensor([[2.0]]), [1.0]).weights
    assert w.shape == (1,) and torch.isfinite(w).all(), f"{comb.name}: {w.tolist()} for m = 1"
    return None


def check_combiner(comb: Combiner) -> dict[str, str]:
    """Every check above on ``comb``: {check: "ok" or why it does not apply}. Raises
    AssertionError at the first broken promise. Each check takes a fresh copy of ``comb`` (a
    combiner that sizes its state by m, as UW or GradVac, starts each one anew)."""
    checks = {f"weights, m = {m}": lambda c, m=m: check_weights(c, m) for m in (2, 3, 5)}
    checks["input dtype"] = check_input_dtype
    checks["permutation"] = check_permutation
    for scale in (1e-6, 1e6):
        checks[f"Gram × {scale:g}"] = lambda c, s=scale: check_gram_scale(c, s)
    for kind in degenerate_grams(2):
        checks[f"{kind} Gram"] = lambda c, k=kind: check_degenerate(c, k)
    checks["losses not read"] = check_reads_losses
    checks["one objective"] = check_single_objective
    return {name: run(copy.deepcopy(comb)) or "ok" for name, run in checks.items()}
