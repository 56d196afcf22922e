"""Random and degenerate Gram matrices shared by the combiner tests."""

import numpy as np


def random_gram(rng: np.random.Generator, m: int, rank: int | None = None) -> np.ndarray:
    A = rng.standard_normal((m, rank or m + 2))
    return A @ A.T


def random_problem(rng: np.random.Generator, m: int):
    """Positive losses, a positive preference and a PSD Gram matrix of random rank."""
    losses = rng.uniform(0.05, 2.0, m)
    pref = rng.uniform(0.05, 1.0, m)
    K = random_gram(rng, m, rank=int(rng.integers(1, m + 3)))
    return losses, pref / pref.sum(), K


def degenerate_grams(m: int) -> dict[str, np.ndarray]:
    g = np.arange(1.0, 4.0)
    one = np.outer(np.ones(m), np.ones(m)) * (g @ g)  # identical objectives
    rank1 = np.outer(np.linspace(1, -1, m), np.linspace(1, -1, m))  # (anti)parallel grads
    return {
        "zero": np.zeros((m, m)),
        "identical": one,
        "rank1": rank1,
        "huge": 1e12 * (np.eye(m) + 0.5),
        "tiny": 1e-12 * (np.eye(m) + 0.5),
    }
