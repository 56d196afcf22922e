"""combiner=torchjd: our wrapper gives what calling TorchJD directly gives, with our validation,
failure policy, seeding and flags around it."""

import numpy as np
import pytest
import torch
import torchjd.aggregation as agg

from moo_lightning.combiners import SolverError, TorchJD
from tests.helpers import build_combiner, random_gram


def _torch_seed(seed: int, step: int) -> int:
    """The seed the wrapper gives torch at (run seed, step), from Combiner.generator()."""
    return int(np.random.default_rng([seed, step]).integers(2**63 - 1))


def _direct(weighting, K, seed=0, step=0):
    torch.manual_seed(_torch_seed(seed, step))
    return weighting(torch.as_tensor(K)).double().numpy()


def _ours(comb, K, pref, step=0, losses=None):
    m = K.shape[0]
    losses = torch.full((m,), 0.5, dtype=torch.float64) if losses is None else losses
    return comb(losses, torch.as_tensor(K), pref, step=step).weights.numpy()


# (method, kwargs, the TorchJD weighting it must match given the normalised preference p)
CASES = [
    ("UPGrad", {}, lambda p: agg.UPGradWeighting(pref_vector=p)),
    ("UPGradWeighting", {"reg_eps": 1e-6}, None),
    ("DualProj", {}, lambda p: agg.DualProjWeighting(pref_vector=p)),
    ("CAGrad", {"c": 0.5}, lambda p: agg.CAGradWeighting(c=0.5)),
    ("IMTLG", {}, lambda p: agg.IMTLGWeighting()),
    ("AlignedMTL", {"scale_mode": "median"}, lambda p: agg.AlignedMTLWeighting(p, "median")),
    ("MGDA", {"epsilon": 1e-6}, lambda p: agg.MGDAWeighting(epsilon=1e-6)),
    ("FairGrad", {"alpha": 1.0}, lambda p: agg.FairGradWeighting(alpha=1.0)),
    ("PCGrad", {}, lambda p: agg.PCGradWeighting()),
    ("Random", {}, lambda p: agg.RandomWeighting()),
    ("Constant", {}, lambda p: agg.ConstantWeighting(p)),
    ("Constant", {"weights": [1.0, 2.0, 3.0]}, None),
    ("Sum", {}, lambda p: agg.SumWeighting()),
]


@pytest.mark.parametrize(("method", "kwargs", "oracle"), CASES)
def test_wrapper_equals_torchjd_called_directly(method, kwargs, oracle):
    from torchjd._linalg import QuadprogProjector

    if oracle is None and method.startswith("UPGrad"):
        oracle = lambda p: agg.UPGradWeighting(p, QuadprogProjector(reg_eps=1e-6))  # noqa: E731
    if oracle is None:
        oracle = lambda p: agg.ConstantWeighting(torch.tensor([1.0, 2.0, 3.0]).double())  # noqa
    comb = TorchJD(method, kwargs)
    rng = np.random.default_rng(0)
    worst = 0.0
    for step in range(10):
        K = random_gram(rng, 3, rank=int(rng.integers(1, 5)))
        pref = rng.uniform(0.1, 1.0, 3)
        p = torch.as_tensor(pref / pref.sum())
        ours = _ours(comb, K, pref, step=step)
        ref = _direct(oracle(p), K, step=step)
        worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst <= 1e-12, worst  # measured: 0 (the same float64 computation)


def test_stateful_methods_match_a_direct_sequence_and_are_not_resumable():
    """GradVac and CRMOGM keep TorchJD's state across calls: a sequence of calls matches the same
    sequence on a directly built weighting; their state is not checkpointed."""
    rng = np.random.default_rng(3)
    Ks = [random_gram(rng, 3) for _ in range(6)]
    for comb, ref in [
        (TorchJD("GradVac", {"beta": 0.3}), agg.GradVacWeighting(beta=0.3)),
        (
            TorchJD("CRMOGM", {"weighting": {"method": "MGDA"}, "alpha": 0.5}),
            agg.CRMOGMWeighting(agg.MGDAWeighting(), alpha=0.5),
        ),
    ]:
        assert comb.resumable is False
        for step, K in enumerate(Ks):
            np.testing.assert_allclose(
                _ours(comb, K, [1, 1, 1], step=step), _direct(ref, K, step=step), atol=1e-12
            )
    assert TorchJD("PCD").resumable is False
    assert TorchJD("UPGrad").resumable and TorchJD("PCGrad").resumable


@pytest.mark.parametrize("method", ["PCGrad", "Random", "GradVac"])
def test_same_seed_and_step_same_weights_and_global_rng_untouched(method):
    rng = np.random.default_rng(1)
    K = random_gram(rng, 5)
    K[0, 1] = K[1, 0] = -abs(K[0, 1]) - 1  # a conflict, so PCGrad's order matters

    def run(seed, step):
        comb = TorchJD(method)
        comb.seed = seed
        return _ours(comb, K, np.ones(5), step=step)

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = run(7, 40), run(7, 40)
    assert torch.equal(torch.random.get_rng_state(), before)
    np.testing.assert_array_equal(a, b)
    others = [run(7, s) for s in range(41, 49)] + [run(8, 40)]
    assert any(np.abs(o - a).max() > 1e-9 for o in others)


def test_names_with_or_without_suffix_and_hydra_overrides():
    assert TorchJD("CAGradWeighting", {"c": 0.4}).method == "CAGrad"
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from tests.helpers import CONF

    with initialize_config_dir(CONF, version_base="1.3"):
        for overrides, method, kwargs in [
            (["combiner.method=CAGrad", "combiner.kwargs={c: 0.5}"], "CAGrad", {"c": 0.5}),
            (["combiner.method=UPGrad", "+combiner.kwargs.reg_eps=1e-6"], "UPGrad", None),
            (["combiner.method=CRMOGM", "combiner.kwargs={weighting: MGDA}"], "CRMOGM", None),
        ]:
            cfg = compose("train", overrides=["combiner=torchjd", *overrides])
            comb = instantiate(cfg.combiner)
            assert comb.method == method
            if kwargs is not None:
                assert comb.kwargs == kwargs
            w = _ours(comb, np.eye(2) + 0.1, [0.5, 0.5])
            assert np.all(np.isfinite(w))
    assert build_combiner("torchjd").method == "UPGrad"


@pytest.mark.parametrize(
    ("method", "kwargs", "match"),
    [
        ("Foo", {}, r"combiner.method 'Foo' is not a TorchJD Gramian weighting. Available: Al"),
        ("ExcessMTL", {}, "need the Jacobian itself"),
        ("CAGrad", {}, r"combiner.kwargs: CAGrad needs c .* It accepts: c, norm_eps"),
        ("CAGrad", {"c": 1, "bar": 2}, r"CAGrad does not accept bar. It accepts: c, norm_eps"),
        ("UPGrad", {"projector": 1}, r"UPGrad does not accept projector. It accepts: pref_vec"),
        ("CAGrad", {"c": -1.0}, r"combiner.kwargs \(CAGrad\): c must be non-negative"),
        ("UPGrad", {"reg_eps": -1.0}, r"combiner.kwargs \(UPGrad\): reg_eps must be non-neg"),
        ("UPGrad", {"pref_vector": [1, "a"]}, r"kwargs.pref_vector must be a list of numbers"),
        ("CRMOGM", {}, r"CRMOGM needs weighting"),
        ("CRMOGM", {"weighting": "Nope"}, r"combiner.kwargs.weighting.method 'Nope' is not"),
        ("CRMOGM", {"weighting": {"method": "CAGrad"}}, r"kwargs.weighting.kwargs: CAGrad needs c"),
        ("Krum", {"n_byzantine": -1}, r"combiner.kwargs \(Krum\)"),
    ],
)
def test_bad_method_or_keyword_is_one_line(method, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        TorchJD(method, kwargs)
    assert "\n" not in str(err.value)


def test_torchjd_errors_become_solver_errors_and_follow_on_failure():
    K = torch.eye(2, dtype=torch.float64)
    comb = TorchJD("Krum", {"n_byzantine": 1})  # needs at least n_byzantine + 3 objectives
    with pytest.raises(SolverError, match="TorchJD Krum failed: ValueError"):
        comb(torch.tensor([0.5, 0.5]), K, [0.5, 0.5])
    with pytest.warns(RuntimeWarning, match="falling back"):
        res = TorchJD("Krum", {"n_byzantine": 1}, on_failure="ls")(
            torch.tensor([0.5, 0.5]), K, [0.25, 0.75]
        )
    assert res.fallback
    # Krum ignores the preference (none is recorded for the run): LS at equal weights
    np.testing.assert_allclose(res.weights.numpy(), [0.5, 0.5])


def test_preference_rule():
    """The preference is used exactly where TorchJD has a preference-like argument we fill."""
    for method, kwargs in [("UPGrad", {}), ("DualProj", {}), ("AlignedMTL", {}), ("Constant", {})]:
        assert TorchJD(method, kwargs).uses_preference
    assert TorchJD("CRMOGM", {"weighting": "UPGrad"}).uses_preference
    for method, kwargs in [
        ("UPGrad", {"pref_vector": [1, 1]}),
        ("Constant", {"weights": [1, 2]}),
        ("CAGrad", {"c": 0.5}),
        ("PCGrad", {}),
        ("MGDA", {}),
        ("IMTLG", {}),
        ("CRMOGM", {"weighting": "MGDA"}),
    ]:
        assert not TorchJD(method, kwargs).uses_preference, method
    K = np.array([[2.0, -0.5], [-0.5, 1.0]])
    a = _ours(TorchJD("UPGrad"), K, [0.2, 0.8])
    b = _ours(TorchJD("UPGrad"), K, [0.8, 0.2])
    assert np.abs(a - b).max() > 1e-3
    # uniform preference = TorchJD's default (1/m)
    np.testing.assert_allclose(
        _ours(TorchJD("UPGrad"), K, [1, 1]), _direct(agg.UPGradWeighting(), K), atol=1e-12
    )


METHODS = [
    ("UPGrad", {}),
    ("DualProj", {}),
    ("CAGrad", {"c": 0.5}),
    ("IMTLG", {}),
    ("AlignedMTL", {}),
    ("MGDA", {}),
    ("FairGrad", {"alpha": 2.0}),
    ("PCGrad", {}),
    ("GradVac", {}),
    ("PCD", {}),
    ("Krum", {"n_byzantine": 1, "n_selected": 2}),
    ("Mean", {}),
    ("Sum", {}),
    ("Constant", {}),
    ("Random", {}),
    ("CRMOGM", {"weighting": "MGDA"}),
]


@pytest.mark.parametrize(("method", "kwargs"), METHODS)
def test_flags_are_truthful(method, kwargs):
    """weights_on_simplex and gram_scale_invariant hold where claimed (full-rank K, m = 4)."""
    rng = np.random.default_rng(5)
    for step in range(10):
        K = random_gram(rng, 4)
        pref = rng.uniform(0.1, 1.0, 4)
        comb = TorchJD(method, kwargs)
        w = _ours(comb, K, pref, step=step)
        assert np.all(np.isfinite(w))
        if comb.weights_on_simplex:
            assert np.all(w >= -1e-9) and abs(w.sum() - 1) < 1e-6
        if comb.gram_scale_invariant:
            for scale in (1e-6, 1e6):
                ws = _ours(TorchJD(method, kwargs), scale * K, pref, step=step)
                np.testing.assert_allclose(ws, w, atol=2e-5 * max(1, np.abs(w).max()))
