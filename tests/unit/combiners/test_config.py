"""ConFIG in Gram form: its angles and length, and the TorchJD oracle (built on the Jacobian)."""

import numpy as np
import pytest
import torch
from torchjd.aggregation import ConFIG as TorchJDConFIG

from moo_lightning.combiners import ConFIG


def run(comb, K, pref):
    m = len(pref)
    return comb(torch.ones(m, dtype=torch.float64), torch.tensor(K), pref)


def call(comb, K, pref):
    return run(comb, K, pref).weights.numpy()


@pytest.mark.parametrize("m", [2, 3, 5])
def test_matches_torchjd(m):
    """TorchJD's ConFIG works on the Jacobian G (pinv of the unit rows); ours on K only. Same
    conventions (TorchJD's default preference is ones; the scale of r cancels on both sides),
    so the directions Gᵀw agree to round-off: largest deviation measured 5.2e-15 (full rank)
    and 1.4e-13 (rank-deficient Jacobians, where the pinv cut-offs act on σ there and on σ²
    here), relative to max |d|."""
    rng = np.random.default_rng(80 + m)
    for k in range(20):
        rank = m + 3 if k % 2 else int(rng.integers(1, m + 1))
        G = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, 12))
        G *= 10.0 ** rng.uniform(-3, 3)
        r = rng.uniform(0.05, 1.0, m)
        ours = G.T @ call(ConFIG(), G @ G.T, r)
        ref = TorchJDConFIG(pref_vector=torch.tensor(r))(torch.tensor(G)).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-11 * np.abs(ref).max())


@pytest.mark.parametrize("m", [2, 3, 5])
def test_angles_follow_the_preference_and_length_is_the_projection_sum(m):
    rng = np.random.default_rng(m)
    for _ in range(30):
        G = rng.standard_normal((m, m + 4)) * rng.uniform(0.1, 10.0, (m, 1))
        r = rng.uniform(0.1, 1.0, m)
        d = G.T @ call(ConFIG(), G @ G.T, r)
        unit = d / np.linalg.norm(d)
        cosines = G @ unit / np.linalg.norm(G, axis=1)
        np.testing.assert_allclose(cosines / r, (cosines / r)[0], rtol=1e-9)
        assert cosines.min() > 0  # conflict-free: every objective improves
        np.testing.assert_allclose(np.linalg.norm(d), (G @ unit).sum(), rtol=1e-10)
        np.testing.assert_allclose(call(ConFIG(), G @ G.T, 7.0 * r), call(ConFIG(), G @ G.T, r))


def test_value_table():
    # orthogonal unit gradients, r = 1: ĝ = (1, 1)/√2, length √2, d = g1 + g2
    np.testing.assert_allclose(call(ConFIG(), np.eye(2), [1.0, 1.0]), [1.0, 1.0], atol=1e-15)
    # g1 = (1, 0), g2 = (0, 2): ĝ = (1, 1)/√2 (equal angles), length 1/√2 + 2/√2, so
    # d = (1.5, 1.5) = 1.5·g1 + 0.75·g2
    w = call(ConFIG(), np.diag([1.0, 4.0]), [0.5, 0.5])
    np.testing.assert_allclose(w, [1.5, 0.75], atol=1e-14)


@pytest.mark.parametrize(
    "K", [[[1.0, -1.0], [-1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]], ids=["opposite", "zero"]
)
def test_no_conflict_free_direction_gives_zero(K):
    res = run(ConFIG(), np.array(K), [0.5, 0.5])
    np.testing.assert_array_equal(res.weights.numpy(), [0.0, 0.0])
    assert res.diagnostics["degenerate"] == 1.0


def test_zero_gradient_gets_zero_weight():
    K = np.diag([1.0, 0.0, 4.0])
    w = call(ConFIG(), K, [1.0, 1.0, 1.0])
    assert w[1] == 0.0
    np.testing.assert_allclose(w[[0, 2]], [1.5, 0.75], atol=1e-14)


@pytest.mark.parametrize(
    ("rcond", "match"),
    [(-1.0, r"combiner.rcond must be a finite number >= 0.0"), (1.0, r"must be < 1")],
)
def test_bad_settings(rcond, match):
    with pytest.raises(ValueError, match=match):
        ConFIG(rcond=rcond)
