"""CR-MOGM: the smoothing wrapper, its state, its config group and the TorchJD oracle."""

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
    GradVac,
    PCGrad,
    TorchJD,
    UncertaintyWeighting,
    UPGrad,
)
from tests.helpers import CONF, ROOT, combiner_names, random_gram

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
