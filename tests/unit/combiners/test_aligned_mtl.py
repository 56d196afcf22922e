"""Aligned-MTL: the eigendecomposition closed form, its alignment, and the TorchJD oracle."""

import numpy as np
import pytest
import torch
from torchjd.aggregation import AlignedMTLWeighting

from moo_lightning.combiners import AlignedMTL
from moo_lightning.combiners.aligned_mtl import balance_matrix
from tests.helpers import random_gram


def call(comb, K, pref):
    m = len(pref)
    return comb(torch.ones(m, dtype=torch.float64), torch.tensor(K), pref).weights.numpy()


@pytest.mark.parametrize("mode", ["min", "median", "rmse"])
@pytest.mark.parametrize("m", [2, 3, 5])
def test_matches_torchjd(m, mode):
    """TorchJD applies B to its pref_vector as given (default 1/m; LibMTL applies it to 1,
    a factor m larger); we pass it r/Σr, the vector ours uses. Full-rank Grams: the weights
    agree to round-off (largest deviation measured 5.6e-14 relative to max |w|). Rank-deficient
    ones: the rank cut-offs differ (ours 1e-10·λ_max, TorchJD's m·eps·λ_max), so the effect Kw
    is compared (largest deviation 1.5e-12 relative to max |Kw|)."""
    rng = np.random.default_rng(60 + m)
    for k in range(20):
        full = k % 2 == 1
        K = random_gram(rng, m, rank=m + 2 if full else int(rng.integers(1, m + 1)))
        K *= 10.0 ** rng.uniform(-3, 3)
        r = rng.uniform(0.05, 1.0, m)
        ours = call(AlignedMTL(scale_mode=mode), K, r)
        ref = AlignedMTLWeighting(torch.tensor(r / r.sum()), scale_mode=mode)(torch.tensor(K))
        ref = ref.numpy()
        if full:
            np.testing.assert_allclose(ours, ref, atol=1e-10 * np.abs(ref).max())
        np.testing.assert_allclose(K @ ours, K @ ref, atol=1e-9 * np.abs(K @ ref).max())


@pytest.mark.parametrize("mode", ["min", "median", "rmse"])
def test_aligned_gradients_are_orthogonal_and_equally_long(mode):
    """BKB = σI: the aligned gradients Σ_j B_ij g_j are orthogonal with squared norm σ, the
    smallest / lower-median / mean eigenvalue; and the combiner's weights are B·r/Σr."""
    rng = np.random.default_rng(0)
    for m in (2, 3, 5):
        K = random_gram(rng, m)
        lam = np.linalg.eigvalsh(K)
        sigma = {"min": lam[0], "median": lam[(m - 1) // 2], "rmse": lam.mean()}[mode]
        B, _ = balance_matrix(K, mode, 1e-10)
        np.testing.assert_allclose(B @ K @ B, sigma * np.eye(m), atol=1e-9 * sigma)
        r = rng.uniform(0.1, 1.0, m)
        np.testing.assert_allclose(call(AlignedMTL(scale_mode=mode), K, r), B @ r / r.sum())


def test_zero_gram_gives_the_preference():
    np.testing.assert_allclose(
        call(AlignedMTL(), np.zeros((3, 3)), [1.0, 2.0, 1.0]), [0.25, 0.5, 0.25]
    )


def test_value_table():
    # orthogonal gradients of lengths 1 and 2: B = diag(1, 1/2)·√1 -> w = (u1, u2/2)
    np.testing.assert_allclose(call(AlignedMTL(), np.diag([1.0, 4.0]), [0.5, 0.5]), [0.5, 0.25])
    # rmse: σ = 5/2 -> B = √2.5·diag(1, 1/2)
    np.testing.assert_allclose(
        call(AlignedMTL(scale_mode="rmse"), np.diag([1.0, 4.0]), [0.5, 0.5]),
        np.sqrt(2.5) * np.array([0.5, 0.25]),
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"scale_mode": "max"},
            r"combiner.scale_mode must be one of min, median, rmse. Found 'max'",
        ),
        ({"rcond": -1.0}, r"combiner.rcond must be a finite number >= 0.0"),
        ({"rcond": 2.0}, r"combiner.rcond must be < 1"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AlignedMTL(**kwargs)
