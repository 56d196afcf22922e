"""log_gram: the inner combiner on the Gram of ∇log ℓ, checked against autograd."""

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from moo_lightning.combiners import (
    IMTLG,
    MGDA,
    PNG,
    CAGrad,
    GradVac,
    LinearScalarization,
    LogGram,
    ScaleInvariantLS,
    SolverError,
    UPGrad,
)
from tests.helpers import CONF


def small_problem(seed: int, m: int = 3):
    """A small model with m positive losses: (losses, G = ∇ℓ (m, P), G_log = ∇log ℓ (m, P)), all
    from autograd."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, m))
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, m, dtype=torch.float64)
    net = net.double()
    params = list(net.parameters())

    def flat(scalar):
        grads = torch.autograd.grad(scalar, params, retain_graph=True)
        return torch.cat([g.reshape(-1) for g in grads])

    scale = torch.logspace(-1.0, 1.0, m, dtype=torch.float64)  # losses over two decades
    losses = ((net(x) - y) ** 2).mean(0) * scale
    G = torch.stack([flat(losses[i]) for i in range(m)])
    G_log = torch.stack([flat(torch.log(losses[i])) for i in range(m)])
    return losses.detach().numpy(), G.numpy(), G_log.numpy()


@pytest.mark.parametrize(
    "make",
    [MGDA, IMTLG, lambda: CAGrad(c=0.4), lambda: UPGrad()],
    ids=["mgda", "imtl_g", "cagrad", "upgrad"],
)
def test_equals_the_inner_combiner_on_the_gram_of_log_losses(make):
    """Gᵀw of log_gram on (ℓ, K = GGᵀ) equals G_logᵀw' of the inner combiner on
    K_log = G_log G_logᵀ, with G_log from autograd of log ℓ, over 5 small models with losses
    spread over two decades. Largest deviation measured, relative to max |G_logᵀw'|: 5.1e-16
    (IMTL-G), 8.1e-16 (CAGrad), 3.7e-16 (UPGrad), 5.2e-10 (MGDA: its Frank–Wolfe stops at a KKT
    gap of 1e-10, and the two Grams differ by round-off)."""
    worst = 0.0
    for seed in range(5):
        losses, G, G_log = small_problem(seed)
        m = losses.size
        pref = np.linspace(1.0, 2.0, m)
        w = LogGram(make())(torch.tensor(losses), torch.tensor(G @ G.T), pref).weights.numpy()
        w_log = make()(torch.tensor(np.log(losses)), torch.tensor(G_log @ G_log.T), pref)
        d, d_log = G.T @ w, G_log.T @ w_log.weights.numpy()
        worst = max(worst, np.abs(d - d_log).max() / np.abs(d_log).max())
        np.testing.assert_allclose(w * losses, w_log.weights.numpy(), rtol=1e-8, atol=1e-12)
    assert worst <= 1e-8, worst


def test_loss_only_inner_is_scale_invariant_ls():
    """LS on log ℓ: w = r̂/ℓ, the scale-invariant linear scalarisation."""
    rng = np.random.default_rng(0)
    for _ in range(10):
        losses, pref = rng.uniform(0.05, 5.0, 3), rng.uniform(0.1, 1.0, 3)
        comb = LogGram(LinearScalarization())
        assert not comb.needs_gram and comb.uses_preference
        w = comb(torch.tensor(losses), None, pref).weights.numpy()
        ref = ScaleInvariantLS()(torch.tensor(losses), None, pref).weights.numpy()
        np.testing.assert_allclose(w, ref, rtol=1e-14)


def test_normalize_is_the_famo_reference_scale():
    """normalize: w = (w'/ℓ)/Σ(w'/ℓ), the gradient of Σ w'_i log ℓ_i / Σ_j w'_j/ℓ_j with the
    denominator held constant (FAMO's LOG_MGDA): on the simplex for MGDA."""
    losses, G, _ = small_problem(3)
    K = G @ G.T
    raw = LogGram(MGDA())(torch.tensor(losses), torch.tensor(K), np.ones(3)).weights.numpy()
    comb = LogGram(MGDA(), normalize=True)
    assert comb.weights_on_simplex and not LogGram(MGDA()).weights_on_simplex
    w = comb(torch.tensor(losses), torch.tensor(K), np.ones(3)).weights.numpy()
    np.testing.assert_allclose(w, raw / raw.sum(), rtol=1e-14)
    assert abs(w.sum() - 1.0) < 1e-14 and np.all(w >= 0)


@pytest.mark.parametrize("bad", [0.0, -0.5])
def test_losses_must_be_positive(bad):
    args = (torch.tensor([0.4, bad]), torch.eye(2), [0.5, 0.5])
    with pytest.raises(SolverError, match="needs losses > 0"):
        LogGram(MGDA())(*args)
    with pytest.warns(RuntimeWarning, match="falling back"):
        res = LogGram(MGDA(), on_failure="ls")(*args)
    assert res.fallback


def test_flags_and_state_follow_the_inner_combiner():
    assert LogGram(UPGrad()).uses_preference and not LogGram(IMTLG()).uses_preference
    comb = LogGram(GradVac())
    assert comb.random_weights and comb.resumable
    comb.seed = 4
    assert comb.inner.seed == 4
    comb(torch.tensor([0.5, 2.0]), torch.tensor([[1.0, -0.5], [-0.5, 1.0]]), [1, 1], step=0)
    assert comb.state_dict() == comb.inner.state_dict() and comb.state_dict()["step"] == 0
    with pytest.raises(ValueError, match="cannot wrap 'png'"):
        LogGram(PNG())


def test_config_group():
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "combiner=log_gram",
                "combiner/inner=cagrad",
                "combiner.inner.c=0.5",
                "combiner.normalize=true",
            ],
        )
    comb = instantiate(cfg.combiner)
    assert isinstance(comb, LogGram) and isinstance(comb.inner, CAGrad)
    assert comb.inner.c == 0.5 and comb.normalize is True
    with pytest.raises(ValueError, match="combiner.normalize must be true or false"):
        LogGram(MGDA(), normalize="yes")
