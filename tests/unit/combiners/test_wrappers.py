"""The wrappers of combiners/wrappers.py: CR-MOGM (the smoothing wrapper, its state, its config
group and the TorchJD oracle) and log_gram (the inner combiner on the Gram of ∇log ℓ, checked
against autograd)."""

import io

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torchjd.aggregation import (
    CRMOGMWeighting,
    IMTLGWeighting,
    PCGradWeighting,
    UPGradWeighting,
)

from moo_lightning.combiners import (
    CRMOGM,
    FAMO,
    IMTLG,
    MGDA,
    PNG,
    CAGrad,
    GradVac,
    LinearScalarization,
    LogGram,
    PCGrad,
    ScaleInvariantLS,
    SolverError,
    TorchJD,
    UncertaintyWeighting,
    UPGrad,
)
from tests.helpers import CONF, ROOT, build_combiner, combiner_names, random_gram

WRAPPERS = {"cr_mogm", "log_gram"}


def call(comb, K, step=None, pref=None, losses=None):
    m = len(K)
    losses = torch.ones(m, dtype=torch.float64) if losses is None else torch.tensor(losses)
    pref = np.ones(m) if pref is None else pref
    return comb(losses, torch.tensor(K), pref, step=step).weights.numpy()


def sequence(m, n=12, seed=0):
    rng = np.random.default_rng(seed)
    return [random_gram(rng, m) * 10.0 ** rng.uniform(-1, 1) for _ in range(n)]


@pytest.mark.parametrize("alpha", [0.9, 0.5, 0.0])
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(lambda: IMTLG(), IMTLGWeighting), (lambda: UPGrad(), UPGradWeighting)],
    ids=["imtl_g", "upgrad"],
)
def test_matches_torchjd_over_a_sequence(alpha, ours, theirs):
    """TorchJD's CRMOGMWeighting around the same inner method, over 12 steps of random 4×4 Grams
    (uniform preference), α = 0.9, 0.5 and 0: largest deviation measured 2.2e-15 (IMTL-G) and
    1.6e-15 (UPGrad) in w, relative to max |w|."""
    comb, ref = CRMOGM(ours(), alpha=alpha), CRMOGMWeighting(theirs(), alpha=alpha)
    worst = 0.0
    for step, K in enumerate(sequence(4)):
        w, w_ref = call(comb, K, step), ref(torch.tensor(K)).numpy()
        worst = max(worst, np.abs(w - w_ref).max() / np.abs(w_ref).max())
    assert worst <= 1e-10, worst


@pytest.mark.parametrize("m", [3, 5])
def test_matches_torchjd_around_pcgrad_with_the_same_orders(m, monkeypatch):
    """A random inner combiner: the wrapper forwards its seed and step, so PCGrad draws the
    orders it would draw alone; TorchJD is fed those orders. Largest deviation measured 1.1e-16
    relative to max |w| (0 for m = 3)."""
    comb, ref = CRMOGM(PCGrad(), alpha=0.7), CRMOGMWeighting(PCGradWeighting(), alpha=0.7)
    comb.seed = 13
    worst = 0.0
    for step, K in enumerate(sequence(m, seed=m)):
        probe = PCGrad()
        probe.seed, probe._step = 13, step
        drawn = iter(probe.orders(m))
        monkeypatch.setattr(torch, "randperm", lambda n, it=drawn: torch.as_tensor(next(it)))
        w_ref = ref(torch.tensor(K)).numpy()
        w = call(comb, K, step)
        worst = max(worst, np.abs(w - w_ref).max() / np.abs(w_ref).max())
    assert worst <= 1e-12, worst


def test_smoothing_formula_and_limits():
    grams = sequence(3, n=5)
    inner = [call(MGDA(), K) for K in grams]
    comb = CRMOGM(MGDA(), alpha=0.6)
    expected = inner[0]
    for step, K in enumerate(grams):
        if step:
            expected = 0.6 * expected + 0.4 * inner[step]
        np.testing.assert_allclose(call(comb, K, step), expected, rtol=1e-12)
    frozen = CRMOGM(MGDA(), alpha=1.0)
    for step, K in enumerate(grams):
        np.testing.assert_array_equal(call(frozen, K, step), inner[0])


def test_same_step_smooths_against_the_weights_before_it():
    grams = sequence(3, n=3)
    comb = CRMOGM(MGDA(), alpha=0.5)
    results = [call(comb, K, step) for step, K in enumerate(grams)]
    state = comb.state_dict()
    np.testing.assert_array_equal(call(comb, grams[2], 2), results[2])
    assert comb.state_dict() == state


def test_state_round_trip_is_bit_identical_with_a_stateful_inner():
    """The wrapper's state nests the inner one's (GradVac's targets): torch.save/torch.load
    (weights_only=True) in the middle of a run, then the same weights bit for bit."""
    grams = sequence(4, n=12, seed=5)

    def fresh():
        comb = CRMOGM(GradVac(beta=0.3), alpha=0.8)
        comb.seed = 21
        return comb

    whole = fresh()
    expected = [call(whole, K, step) for step, K in enumerate(grams)]
    first = fresh()
    for step, K in enumerate(grams[:6]):
        call(first, K, step)
    buffer = io.BytesIO()
    torch.save({"combiner": first.state_dict()}, buffer)
    buffer.seek(0)
    resumed = fresh()
    resumed.load_state_dict(torch.load(buffer, weights_only=True)["combiner"])
    for step, K in enumerate(grams[6:], start=6):
        np.testing.assert_array_equal(call(resumed, K, step), expected[step])
    assert resumed.state_dict() == whole.state_dict()


def test_flags_follow_the_inner_combiner():
    assert not CRMOGM(IMTLG()).uses_preference and CRMOGM(MGDA()).weights_on_simplex
    assert CRMOGM(UPGrad()).uses_preference and not CRMOGM(UPGrad()).weights_on_simplex
    assert CRMOGM(PCGrad()).random_weights and not CRMOGM(MGDA()).random_weights
    assert not CRMOGM(TorchJD("GradVac")).resumable and CRMOGM(GradVac()).resumable
    assert CRMOGM(FAMO()).needs_losses_after_step and not CRMOGM(FAMO()).needs_gram


def test_forwards_seed_prepare_parameters_and_after_step():
    comb = CRMOGM(UncertaintyWeighting())
    comb.seed = 17
    assert comb.inner.seed == 17
    comb.prepare(3)
    assert comb.parameters() == comb.inner.parameters() and len(comb.parameters()) == 1
    # UW's own learning rate for its log-variances reaches the optimizer through the wrapper
    assert CRMOGM(UncertaintyWeighting(lr=0.01)).parameter_lr == 0.01
    assert CRMOGM(UncertaintyWeighting()).parameter_lr is None
    famo = CRMOGM(FAMO(), alpha=0.0)  # α = 0: FAMO itself
    alone = FAMO()
    for step in range(4):
        losses = torch.tensor([1.0, 2.0, 0.5]) / (step + 1)
        w = famo(losses, None, np.ones(3), step=step).weights
        np.testing.assert_allclose(w.numpy(), alone(losses, None, np.ones(3)).weights.numpy())
        famo.after_step(losses * 0.9)
        alone.after_step(losses * 0.9)


def test_config_group_composes_any_inner_combiner():
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "combiner=cr_mogm",
                "combiner/inner=upgrad",
                "combiner.inner.reg_eps=0",
                "combiner.alpha=0.5",
            ],
        )
    comb = instantiate(cfg.combiner)
    assert isinstance(comb, CRMOGM) and isinstance(comb.inner, UPGrad)
    assert comb.alpha == 0.5 and comb.inner.reg_eps == 0.0


def test_every_combiner_can_be_an_inner_one():
    inner = {
        p.stem for p in (ROOT / "moo_lightning" / "conf" / "combiner" / "inner").glob("*.yaml")
    }
    assert inner == set(combiner_names()) - WRAPPERS
    for name in sorted(inner):
        text = (ROOT / "moo_lightning" / "conf" / "combiner" / "inner" / f"{name}.yaml").read_text()
        assert f"- /combiner@_here_: {name}\n" in text, name


def test_refuses_foreign_state_other_m_and_bad_settings():
    with pytest.raises(ValueError, match="keeps inner, step, weights, weights_before"):
        CRMOGM(MGDA()).load_state_dict({"phi": 1})
    comb = CRMOGM(MGDA())
    call(comb, np.eye(2), 0)
    with pytest.raises(ValueError, match="holds weights for 2 objectives; got 3"):
        call(comb, np.eye(3), 1)
    with pytest.raises(ValueError, match=r"combiner.alpha must be a finite number in \[0, 1\]"):
        CRMOGM(MGDA(), alpha=1.5)
    with pytest.raises(ValueError, match="combiner.inner must be a combiner"):
        CRMOGM("mgda")


# --- log_gram -------------------------------------------------------------------------------------


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


LOSS_READERS = {"dwa", "epo", "famo", "gls", "png", "si_ls", "stch", "uw"}


def inner_names() -> list[str]:
    folder = ROOT / "moo_lightning" / "conf" / "combiner" / "inner"
    return sorted(p.stem for p in folder.glob("*.yaml"))


@pytest.mark.parametrize("name", inner_names())
def test_refuses_inner_combiners_that_read_the_losses(name):
    """log ℓ < 0 for ℓ < 1: an inner combiner that reads the loss values (SI-LS, GLS and FAMO
    fail on it at every step, EPO clamps it, DWA's ratios change sign, UW diverges, STCH's ideal
    point no longer lies below the losses) is refused when the wrapper is built, in one line
    naming it; every other inner combiner is accepted and named among the allowed ones."""
    inner = build_combiner(name)
    assert inner.reads_losses == (name in LOSS_READERS)
    if name in LOSS_READERS:
        with pytest.raises(ValueError, match=rf"^combiner/inner={name}: log_gram cannot wrap") as e:
            LogGram(inner)
        assert "\n" not in str(e.value)
        allowed = str(e.value).split("Allowed: ")[1]
        assert (
            set(allowed[allowed.index("(") + 1 : allowed.rindex(")")].split(", "))
            == set(inner_names()) - LOSS_READERS
        )
    else:
        comb = LogGram(inner)
        assert not comb.inner.reads_losses and comb.reads_losses


def test_refuses_a_loss_reading_inner_from_the_config():
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=["combiner=log_gram", "combiner/inner=si_ls"])
    with pytest.raises(Exception, match="combiner/inner=si_ls: log_gram cannot wrap"):
        instantiate(cfg.combiner)


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
