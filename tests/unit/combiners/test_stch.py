"""STCH: hand-computed weights, the gradient of the smooth max, its limits and scales, the
analytic check on the synthetic problem, and TorchJD's smooth Tchebycheff scalarizer (its
autograd gradient is our weights)."""

import logging
import math

import numpy as np
import pytest
import torch
from torchjd.scalarization import STCH

from moo_lightning.combiners import LinearScalarization, SmoothTchebycheff
from moo_lightning.tasks.toy import (
    ToyModule,
    ToySteps,
    front_point,
    minimise_on_front,
    ray_point,
)
from tests.helpers import quiet_trainer


def weights(comb, losses, pref):
    return comb(torch.tensor(losses, dtype=torch.float64), None, pref)


def test_hand_computed_weights_and_diagnostics():
    """r = (1, 3) → (1/4, 3/4); terms r ⊙ (ℓ − z) = (0.25·0.8, 0.75·0.2) = (0.2, 0.15); divided by
    μ = 0.05 they are (4, 3), so softmax = (e, 1)/(1 + e) and w = (e/4, 3/4)/(1 + e)."""
    comb = SmoothTchebycheff(mu=0.05, ideal=[0.1, 0.2])
    assert not comb.needs_gram
    res = weights(comb, [0.9, 0.4], [1.0, 3.0])
    e = math.e
    np.testing.assert_allclose(res.weights.numpy(), [e / 4 / (1 + e), 3 / 4 / (1 + e)], rtol=1e-12)
    np.testing.assert_allclose(res.weights.numpy(), [0.18276464, 0.20170607], atol=1e-8)
    assert res.diagnostics["max_term"] == pytest.approx(0.2, abs=1e-15)
    assert res.diagnostics["max_index"] == 0.0
    # g = 0.2 + 0.05·log(1 + e⁻¹)
    assert res.diagnostics["smooth_value"] == pytest.approx(0.2156630844, abs=1e-10)
    assert not res.fallback


@pytest.mark.parametrize("m", [2, 3, 5])
def test_weights_are_the_gradient_of_the_smooth_max(m):
    """Finite, positive (up to underflow at tiny μ), Σw = Σ r̂·softmax, and autograd's ∇_ℓ g_μ."""
    rng = np.random.default_rng(m)
    for mu in (1e-3, 0.01, 0.3, 10.0):
        comb = SmoothTchebycheff(mu=mu, ideal=list(rng.uniform(-0.5, 0.05, m)))
        for _ in range(20):
            losses = rng.uniform(0.0, 2.0, m)
            pref = rng.uniform(0.05, 1.0, m)
            res = weights(comb, losses, pref)
            w = res.weights.numpy()
            assert np.all(np.isfinite(w)) and np.all(w >= 0)
            if mu >= 0.01:  # terms differ by < 2.5, so no exp((t_i − t_max)/μ) underflows to 0
                assert np.all(w > 0)

            r = torch.tensor(pref / pref.sum())
            ell = torch.tensor(losses, requires_grad=True)
            terms = r * (ell - torch.tensor(comb.ideal, dtype=torch.float64))
            g = mu * torch.logsumexp(terms / mu, 0)
            (grad,) = torch.autograd.grad(g, ell)
            np.testing.assert_allclose(w, grad.numpy(), rtol=1e-10, atol=1e-15)
            soft = torch.softmax(terms.detach() / mu, 0)
            assert w.sum() == pytest.approx(float((r * soft).sum()), rel=1e-12)
            assert r.min() - 1e-12 <= w.sum() <= r.max() + 1e-12
            assert res.diagnostics["smooth_value"] == pytest.approx(float(g), rel=1e-12)
            # the smooth max overestimates the max term by at most μ·log m
            gap = res.diagnostics["smooth_value"] - res.diagnostics["max_term"]
            assert -1e-12 <= gap <= mu * math.log(m) + 1e-12


def test_small_mu_concentrates_on_the_max_term_and_large_mu_tends_to_ls():
    losses, pref = [0.3, 0.5, 0.4], [0.5, 0.2, 0.3]  # terms 0.15, 0.10, 0.12: the first is max
    w = weights(SmoothTchebycheff(mu=1e-4), losses, pref).weights.numpy()
    np.testing.assert_allclose(w, [0.5, 0.0, 0.0], atol=1e-12)
    # raise ℓ2: now r2·ℓ2 = 0.2 is the max term and takes all the weight
    w = weights(SmoothTchebycheff(mu=1e-4), [0.3, 1.0, 0.4], pref).weights.numpy()
    np.testing.assert_allclose(w, [0.0, 0.2, 0.0], atol=1e-12)
    # μ → ∞: softmax → uniform, w → r̂/m, proportional to linear scalarisation's weights
    w = weights(SmoothTchebycheff(mu=1e6), losses, pref).weights.numpy()
    ls = weights(LinearScalarization(), losses, pref).weights.numpy()
    np.testing.assert_allclose(w, ls / 3, rtol=1e-6)


@pytest.mark.parametrize("scale", [1e-12, 1.0, 1e6, 1e30, 1e300])
def test_huge_and_tiny_loss_scales_do_not_overflow(scale):
    comb = SmoothTchebycheff(mu=1e-3)  # exp(terms/μ) alone would overflow from scale ≈ 1e3
    res = weights(comb, [scale, 1.5 * scale], [0.5, 0.5])
    w = res.weights.numpy()
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    assert w.sum() == pytest.approx(0.5, rel=1e-12)
    if scale >= 1.0:  # the gap (0.25·scale) dwarfs μ: all the weight on the second objective
        np.testing.assert_allclose(w, [0.0, 0.5], atol=1e-12)
    assert math.isfinite(res.diagnostics["smooth_value"])
    assert res.diagnostics["max_term"] == pytest.approx(0.75 * scale, rel=1e-12)


def test_returns_the_losses_device_and_dtype():
    res = SmoothTchebycheff()(torch.tensor([0.5, 0.7], dtype=torch.float32), None, 0.3)
    assert res.weights.dtype == torch.float32 and res.weights.shape == (2,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mu": 0.0}, r"combiner.mu must be a finite number > 0.0. Found 0.0"),
        ({"mu": -0.1}, r"combiner.mu must be a finite number > 0.0. Found -0.1"),
        ({"mu": float("nan")}, r"combiner.mu must be a finite number > 0.0. Found nan"),
        ({"mu": float("inf")}, r"combiner.mu must be a finite number > 0.0. Found inf"),
        ({"mu": "0.1"}, r"combiner.mu must be a finite number > 0.0. Found '0.1'"),
        ({"mu": True}, r"combiner.mu must be a finite number > 0.0. Found True"),
        ({"ideal": [0.0, float("nan")]}, r"combiner.ideal must be null .* Found \[0.0, nan\]"),
        ({"ideal": [0.0, "a"]}, r"combiner.ideal must be null .* list of m finite numbers"),
        ({"ideal": []}, r"combiner.ideal must be null .* Found \[\]"),
        ({"ideal": 0.0}, r"combiner.ideal must be null .* Found 0.0"),
        ({"ideal": "zeros"}, r"combiner.ideal must be null .* Found 'zeros'"),
    ],
)
def test_bad_hyperparameters_raise_one_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmoothTchebycheff(**kwargs)


def test_ideal_of_the_wrong_length_is_refused_at_the_first_call():
    from moo_lightning.module import ConfigError

    comb = SmoothTchebycheff(ideal=[0.0, 0.0, 0.0])
    with pytest.raises(ConfigError, match=r"ideal must have one entry per objective \(2\)"):
        weights(comb, [0.5, 0.5], [0.5, 0.5])
    assert issubclass(ConfigError, ValueError)


def test_ideal_accepts_an_omegaconf_list():
    from omegaconf import OmegaConf

    comb = SmoothTchebycheff(ideal=OmegaConf.create([0, 0.1]))
    assert comb.ideal == [0.0, 0.1]


# --- the analytic check on the synthetic problem --------------------------------------------------

# The test's μ and step size. The default μ = 0.01 leaves a smoothing bias of up to 0.027 on this
# concave front (the minimiser of g_μ over the front vs the Tchebycheff point, at r1 = 0.2 / 0.8);
# μ = 0.003 brings it to ≈ 0.008, inside the 0.01 tolerance the other toy tests use. g_μ's
# curvature grows like 1/μ, and plain SGD stops oscillating between the objectives only for
# lr ≲ 15μ here, hence lr = 0.04; momentum 0.5 makes up for that small lr on the way in from the
# off-front start, so 250 steps settle every preference (≈ 140 are needed).
MU, LR, MOMENTUM, STEPS, TOL = 0.003, 0.04, 0.5, 250, 0.01


def _train_toy(combiner, r1):
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    module = ToyModule(
        combiner, r1, optimizer=lambda ps: torch.optim.SGD(ps, lr=LR, momentum=MOMENTUM)
    )
    quiet_trainer().fit(module, datamodule=ToySteps(STEPS))
    assert module.skipped_steps == 0 and module.fallbacks == 0
    return module.final_losses()


def _tchebycheff(loss, r):
    return torch.max(r * loss)  # the ideal point is 0 on this problem


@pytest.mark.parametrize(
    "r1", [0.5] + [pytest.param(r, marks=pytest.mark.slow) for r in (0.2, 0.35, 0.65, 0.8)]
)
def test_toy_stch_reaches_the_tchebycheff_point_where_ls_cannot(r1):
    target = minimise_on_front(_tchebycheff, r1)
    # with z = 0 the minimax point of a monotone front is where r1ℓ1 = r2ℓ2
    assert np.abs(target - ray_point(r1)).max() <= 1e-4

    stch = _train_toy(SmoothTchebycheff(mu=MU), r1)
    assert np.abs(stch - target).max() <= TOL, (stch, target)
    # and what is left is the smoothing bias: STCH has converged to the minimiser of g_μ
    smooth = minimise_on_front(lambda loss, r: MU * torch.logsumexp(r * loss / MU, 0), r1)
    assert np.abs(stch - smooth).max() <= 2e-3, (stch, smooth)

    # the front is concave: LS with the same preference and optimiser runs to an end of it
    ls = _train_toy(LinearScalarization(), r1)
    assert np.abs(ls - target).max() >= 0.2, (ls, target)
    assert min(np.abs(ls - front_point(end)).max() for end in (1.0, -1.0)) <= TOL, ls


# --- against TorchJD's STCH -----------------------------------------------------------------------


def test_weights_are_the_gradient_of_torchjd_stch():
    """TorchJD 0.18's scalarization.STCH(μ, weights = r/Σr, reference = z) differentiated by
    autograd, on 150 random problems (m = 2, 3, 5; losses over 6 decades; μ in [1e-3, 1]; z = 0
    or a random ideal point): largest deviation measured 8.1e-16 relative to max |w|."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for m in (2, 3, 5):
        for _ in range(50):
            losses = rng.uniform(0.01, 3.0, m) * 10.0 ** rng.uniform(-3, 3)
            pref, mu = rng.uniform(0.05, 1.0, m), 10.0 ** rng.uniform(-3, 0)
            z = rng.uniform(0.0, 0.5, m) * losses.min() if rng.random() < 0.5 else None
            comb = SmoothTchebycheff(mu=mu, ideal=None if z is None else list(z))
            ours = comb(torch.tensor(losses), None, pref).weights.numpy()
            values = torch.tensor(losses, requires_grad=True)
            ref_z = None if z is None else torch.tensor(z)
            scalar = STCH(mu, weights=torch.tensor(pref / pref.sum()), reference=ref_z)(values)
            (ref,) = torch.autograd.grad(scalar, values)
            worst = max(worst, np.abs(ours - ref.numpy()).max() / np.abs(ref.numpy()).max())
    assert worst <= 1e-12, worst
