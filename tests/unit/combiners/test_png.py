import cvxpy as cp
import numpy as np
import pytest
import torch

from moo_lightning.combiners import PNG, ComplexCosine, NonUniformity, WeightedDistance
from moo_lightning.combiners.criteria import criterion_gradient, negative_hypervolume
from moo_lightning.combiners.epo import non_uniformity
from moo_lightning.combiners.png import _DualQP, box_qp_two
from tests.helpers import random_gram


def qp_reference(K, q):
    lam = cp.Variable(q.size, nonneg=True)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(lam, cp.psd_wrap(K)) + q @ lam))
    prob.solve("CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return lam.value


def png_dual(rng, m):
    """A dual QP as PNG poses it: q = K f − α g with g = MGDA's value (> 0, so bounded below)."""
    from moo_lightning.combiners import min_norm_weights

    while True:
        K = random_gram(rng, m, rank=int(rng.integers(1, m + 2)))
        g = min_norm_weights(K)[1]
        if g > 1e-6 * np.max(np.diag(K)):
            return K, K @ rng.standard_normal(m) - 0.5 * g


def dual_value(K, q, lam):
    return 0.5 * lam @ K @ lam + q @ lam


@pytest.mark.parametrize("m", [2, 3, 5])
def test_box_qp_kkt(m):
    """λ ≥ 0, ∇ = Kλ + q ≥ 0, λ_i ∇_i = 0."""
    rng = np.random.default_rng(m)
    for _ in range(200):
        K, q = png_dual(rng, m)
        lam = box_qp_two(K, q) if m == 2 else _DualQP(m).solve(K, q, "CLARABEL")
        grad = K @ lam + q
        tol = 1e-6 * max(1.0, np.abs(K).max(), np.abs(q).max())
        assert np.all(lam >= 0)
        assert np.all(grad >= -tol)
        assert np.all(np.abs(lam * grad) <= tol * max(1.0, lam.max()))


def test_exact_two_objective_qp_matches_cvxpy_on_1000_grams():
    rng = np.random.default_rng(11)
    for _ in range(1000):
        K, q = png_dual(rng, 2)
        lam = box_qp_two(K, q)
        ref = qp_reference(K, q)
        scale = max(1.0, np.abs(K).max())
        assert abs(dual_value(K, q, lam) - dual_value(K, q, ref)) <= 1e-6 * scale
        # λ is unique up to the null space of K; its effect Kλ is unique
        np.testing.assert_allclose(K @ lam, K @ ref, atol=1e-6 * scale)


def test_png_direction_satisfies_primal_constraints():
    """v = Gᵀ(f + λ) satisfies ∇ℓ_iᵀv ≥ φ, i.e. (K(f + λ))_i ≥ φ when the constraint is on."""
    rng = np.random.default_rng(5)
    png = PNG(alpha=0.5, e=0.0)
    for _ in range(200):
        K = random_gram(rng, 2)
        f = rng.standard_normal(2)
        res = png(torch.tensor([0.5, 0.5]), torch.tensor(K), [0.5, 0.5], criterion_grad=f)
        w, phi = res.weights.numpy(), res.diagnostics["phi"]
        assert res.diagnostics["constraint_active"] == 1.0
        assert np.all(K @ w >= phi - 1e-7 * np.abs(K).max())


def test_value_table():
    # K = I, ∂F/∂ℓ = (1, 0): g = 1/2, φ = 1/4, λ = (0, 1/4), w = (1, 1/4)
    res = PNG(alpha=0.5, e=1e-3)(
        torch.tensor([0.5, 0.5]),
        torch.eye(2, dtype=torch.float64),
        [0.5, 0.5],
        criterion_grad=[1.0, 0.0],
    )
    np.testing.assert_allclose(res.weights.numpy(), [1.0, 0.25], atol=1e-12)
    assert res.diagnostics["g"] == pytest.approx(0.5)
    assert res.diagnostics["phi"] == pytest.approx(0.25)


def test_constraint_off_below_threshold_gives_plain_criterion_descent():
    K = np.array([[1.0, -1.0], [-1.0, 1.0]]) * 1e-4  # opposite gradients: g = 0 ≤ e
    res = PNG(e=1e-3)(
        torch.tensor([0.5, 0.5]), torch.tensor(K), [0.5, 0.5], criterion_grad=[0.3, -0.2]
    )
    assert res.diagnostics["constraint_active"] == 0.0
    np.testing.assert_allclose(res.weights.numpy(), [0.3, -0.2])


def test_criteria_values_and_gradients():
    ell, r = np.array([0.3, 0.6]), np.array([0.4, 0.6])
    F, grad = criterion_gradient(NonUniformity(), ell, r)
    mu, a = non_uniformity(ell, r)
    assert F == pytest.approx(mu)
    np.testing.assert_allclose(grad, a / (r @ ell), rtol=1e-10)  # dμ/dℓ = a / Σ rℓ
    F, grad = criterion_gradient(WeightedDistance(), ell, r)
    assert F == pytest.approx(((ell - r) ** 2 / r).sum())
    np.testing.assert_allclose(grad, 2 * (ell - r) / r)
    F, _ = criterion_gradient(ComplexCosine(), ell, r)
    expected = -np.cos(np.pi * (ell[0] - r[0]) / 2) + (np.cos(np.pi * (ell[1] - r[1])) + 1) ** 2
    assert F == pytest.approx(expected)


def test_how_each_criterion_reads_the_preference():
    """As documented (README, docs/combiners/png.md): non_uniformity puts the smaller loss on the
    objective with the larger r_i (EPO's ray), weighted_distance takes r as target losses, so the
    larger r_i gets the larger loss. Minimisers over the toy front for r = (0.2, 0.8)."""
    from moo_lightning.tasks.toy import minimise_on_front, ray_point

    ray = minimise_on_front(NonUniformity(), 0.2)
    np.testing.assert_allclose(ray, ray_point(0.2), atol=1e-4)
    assert ray[0] > ray[1]  # r1 < r2: ℓ1 > ℓ2
    near = minimise_on_front(WeightedDistance(), 0.2)
    assert near[0] < near[1] and abs(near[0] - 0.2) < 0.02  # ℓ ≈ t = r
    assert np.allclose(minimise_on_front(WeightedDistance(), 0.8), near[::-1])


def test_png_counts_the_losses_non_uniformity_clamps():
    """non_uniformity assumes ℓ > 0 and raises smaller losses to 1e-12: PNG counts them at every
    step in ``clamped_losses``; a criterion without a floor records no such count."""
    K = torch.tensor([[1.0, -0.2], [-0.2, 1.0]])

    def clamped(losses, criterion=None):
        res = PNG(criterion=criterion)(torch.tensor(losses), K, [0.5, 0.5])
        assert torch.isfinite(res.weights).all()
        return res.diagnostics.get("clamped_losses")

    assert clamped([0.4, 0.6]) == 0.0
    assert clamped([-2.0, 0.6]) == 1.0
    assert clamped([0.0, 1e-13]) == 2.0
    assert clamped([-2.0, 0.6], WeightedDistance()) is None


def test_user_criterion_is_any_callable():
    png = PNG(criterion=lambda losses, pref: (losses**2).sum(), e=1.0)
    res = png(torch.tensor([0.5, 1.0]), torch.eye(2), [0.5, 0.5])
    np.testing.assert_allclose(res.weights.numpy(), [1.0, 2.0])  # ∂F/∂ℓ = 2ℓ, constraint off
    with pytest.raises(ValueError, match="criterion must be callable"):
        PNG(criterion="not callable")


def test_negative_hypervolume_matches_moocore():
    import moocore

    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = rng.uniform(0, 1.2, (6, 2))
        ours = -float(negative_hypervolume(torch.tensor(pts)))
        assert ours == pytest.approx(moocore.hypervolume(pts, ref=[1.0, 1.0]), abs=1e-12)


def spread_criterion(losses, preference):
    """A criterion written as a plain function (for the test below)."""
    return ((losses - losses.mean()) ** 2).sum()


def test_a_function_criterion_from_the_command_line_needs_partial():
    """`combiner.criterion._target_=pkg.f +combiner.criterion._partial_=true` (docs/combiners/
    png.md): without `_partial_` Hydra would call the function with no arguments."""
    from hydra import compose, initialize_config_module
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    target = f"combiner.criterion._target_={__name__}.spread_criterion"
    with initialize_config_module("moo_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=["combiner=png", target])
        with pytest.raises(InstantiationException, match="missing"):
            instantiate(cfg.combiner)
        cfg = compose(
            "train", overrides=["combiner=png", target, "+combiner.criterion._partial_=true"]
        )
    png = instantiate(cfg.combiner)
    losses = torch.tensor([1.0, 2.0], dtype=torch.float64)
    res = png(losses, torch.eye(2, dtype=torch.float64), [0.5, 0.5])
    # the function is the criterion: F = Σ(ℓ − mean ℓ)² = 0.5 at ℓ = (1, 2)
    assert png.criterion(losses, None) == pytest.approx(0.5)
    assert torch.isfinite(res.weights).all() and not res.fallback
