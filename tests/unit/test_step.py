"""The module's side of the combiner interface: a combiner's state is saved in
the checkpoint and a resumed run continues bit for bit; randomness comes from (run seed, global
step); learnable combiner weights step with the model's; combiners that update after the step get
the same batch's losses; stateful combiners get one copy per ensemble member; a combiner whose
state cannot be checkpointed refuses resume checkpoints; and every stateful or random combiner
of moo_lightning/conf/combiner/, built from its YAML, resumes bit for bit."""

import functools

import lightning as L
import numpy as np
import pytest
import torch

from moo_lightning.combiners import (
    CRMOGM,
    MGDA,
    PNG,
    FairGrad,
    LinearScalarization,
    NashMTL,
    UPGrad,
)
from moo_lightning.combiners.base import Combiner
from moo_lightning.ensemble import EnsembleModule
from moo_lightning.errors import ConfigError
from moo_lightning.module import GradientScope, MultiObjectiveModule
from moo_lightning.step import (
    CombinerSchedule,
    RowCombiners,
    keeps_state,
    scale_dependence,
    warn_scale_dependence,
)
from tests.helpers import CONF, quiet_trainer


class EMAWeights(Combiner):
    """Stateful and random: weights from an EMA of the losses, jittered by the step's draw."""

    needs_gram = False
    name = "ema_test"
    weights_on_simplex = False

    def __init__(self):
        super().__init__()
        self.ema: list[float] | None = None
        self.draws: list[float] = []

    def _combine(self, losses, gram, preference):
        ema = losses if self.ema is None else 0.5 * np.asarray(self.ema) + 0.5 * losses
        self.ema = [float(v) for v in ema]
        u = float(self.generator().uniform())
        self.draws.append(u)
        w = (1.0 + u) * ema / ema.sum()
        return w, {}

    def state_dict(self):
        return {"ema": self.ema}

    def load_state_dict(self, state):
        self.ema = state["ema"]


class Learnable(Combiner):
    """UW-like: learnable log-weights s, w = exp(-s), s.grad set from the given losses."""

    needs_gram = False
    name = "learnable_test"
    weights_on_simplex = False
    uses_preference = False

    def __init__(self):
        super().__init__()
        self.s = torch.nn.Parameter(torch.zeros(3))

    def parameters(self):
        return [self.s]

    def _combine(self, losses, gram, preference):
        s = self.s.detach().double().numpy()
        self.s.grad = torch.as_tensor(0.5 - losses * np.exp(-s), dtype=self.s.dtype)
        return np.exp(-s), {}

    def state_dict(self):
        return {"s": self.s.detach().clone()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.s.copy_(state["s"])


class AfterStep(Combiner):
    needs_gram = False
    needs_losses_after_step = True
    name = "after_test"

    def __init__(self, on_failure="raise"):
        super().__init__(on_failure)
        self.seen: list[list[float]] = []

    def _combine(self, losses, gram, preference):
        return preference / preference.sum(), {}

    def after_step(self, losses):
        self.seen.append(losses.tolist())


class Hidden(EMAWeights):
    resumable = False


def _net():
    with torch.random.fork_rng():  # the run's seed stays the global RNG's initial seed
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


class Tiny(MultiObjectiveModule):
    def __init__(self, combiner):
        super().__init__(
            combiner, [0.2, 0.5, 0.3], optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1)
        )
        self.net = _net()
        self.recomputed: list[list[float]] = []

    def objectives(self, batch):
        out = self.net(batch[0])
        losses = torch.stack(
            [out[:, 0].pow(2).mean(), (out[:, 1] - 1).abs().mean(), out[:, 2].exp().mean()]
        )
        if not torch.is_grad_enabled():
            self.recomputed.append(losses.tolist())
        return losses


def _trainer(max_steps, enable_checkpointing=False, **kw):
    return quiet_trainer(max_steps=max_steps, enable_checkpointing=enable_checkpointing, **kw)


def _loader():
    g = torch.Generator().manual_seed(3)
    data = torch.utils.data.TensorDataset(torch.randn(16, 5, generator=g))
    # one full batch per epoch: a resume at an epoch's end replays no data order
    return torch.utils.data.DataLoader(data, batch_size=16)


def _fit(combiner, steps, ckpt_path=None, seed=7, checkpoints=None):
    from lightning.pytorch.callbacks import ModelCheckpoint

    L.seed_everything(seed, verbose=False)
    module = Tiny(combiner)
    callbacks = []
    if checkpoints:  # every epoch's checkpoint kept (the resume preset keeps the newest)
        callbacks = [ModelCheckpoint(dirpath=checkpoints, save_top_k=-1, every_n_epochs=1)]
    trainer = _trainer(steps, callbacks=callbacks, enable_checkpointing=bool(checkpoints))
    trainer.fit(module, _loader(), ckpt_path=ckpt_path, weights_only=True)
    return module, trainer


@pytest.mark.parametrize("make", [EMAWeights, Learnable], ids=["ema+random", "learnable"])
def test_a_resumed_run_continues_bit_for_bit_with_the_combiners_state(make, tmp_path):
    whole, _ = _fit(make(), 8, checkpoints=tmp_path)
    fourth_epoch = tmp_path / "epoch=3-step=4.ckpt"  # what a run killed at step 5 resumes from
    resumed, _ = _fit(make(), 8, ckpt_path=str(fourth_epoch))
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert whole.combiner.state_dict().keys() == resumed.combiner.state_dict().keys()
    for k, v in whole.combiner.state_dict().items():
        other = resumed.combiner.state_dict()[k]
        assert torch.equal(torch.as_tensor(v), torch.as_tensor(other)), k
    if make is EMAWeights:  # the resumed run drew what the uninterrupted one drew at steps 4-7
        assert resumed.combiner.draws == whole.combiner.draws[4:]
        assert len(set(whole.combiner.draws)) == 8  # a new draw each step


def test_randomness_depends_on_the_run_seed_and_the_step_only():
    a, _ = _fit(EMAWeights(), 4, seed=7)
    b, _ = _fit(EMAWeights(), 4, seed=7)
    c, _ = _fit(EMAWeights(), 4, seed=8)
    assert a.combiner.draws == b.combiner.draws != c.combiner.draws
    # the global RNG (dropout, data order) does not move the combiner's draws
    comb = EMAWeights()
    comb.seed = 7
    torch.manual_seed(123)
    np.random.seed(5)
    comb(torch.ones(3), None, [0.2, 0.5, 0.3], step=2)
    assert comb.draws[0] == np.random.default_rng([7, 2]).uniform()


def test_learnable_combiner_weights_are_stepped_by_the_optimizer():
    module, _ = _fit(Learnable(), 6)
    s = module.combiner.s.detach()
    assert not torch.equal(s, torch.zeros(3))  # moved by SGD from its own gradient
    opt = module.optimizers().optimizer
    assert any(p is module.combiner.s for g in opt.param_groups for p in g["params"])


def test_a_combiner_that_updates_after_the_step_gets_the_same_batchs_new_losses():
    module, _ = _fit(AfterStep(), 5)
    assert len(module.combiner.seen) == 5
    assert module.combiner.seen == module.recomputed  # one process: the global mean = own


def test_a_combiner_whose_state_cannot_be_saved_refuses_resume_checkpoints(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    L.seed_everything(0, verbose=False)
    module = Tiny(Hidden())
    trainer = _trainer(
        2, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)]
    )
    with pytest.raises(ConfigError, match="cannot be resumed exactly: use callbacks=none"):
        trainer.fit(module, _loader())
    # without resume checkpoints it trains
    _fit(Hidden(), 2)


def test_the_preference_is_recorded_only_when_the_combiner_uses_it():
    assert Tiny(EMAWeights()).recorded_preference == [0.2, 0.5, 0.3]
    assert Tiny(Learnable()).recorded_preference is None


class Stacked(EnsembleModule):
    def __init__(self, combiner):
        super().__init__(combiner, [0.5, 0.5], members=3)
        self.w = torch.nn.Parameter(torch.randn(3, 4, 2, dtype=torch.float64))

    def objectives(self, batch):
        out = torch.einsum("bd,ndk->nbk", batch[0].double(), self.w)
        return torch.stack([out[..., 0].pow(2).mean(1), (out[..., 1] - 1).abs().mean(1)], dim=1)


class EMAGram(EMAWeights):
    needs_gram = True  # the stacked per-member gradient path


def test_every_member_of_an_ensemble_keeps_its_own_state():
    ens = Stacked(EMAGram())
    rows = ens.row_combiners
    assert len({id(c) for c in rows.rows}) == 3 and rows.rows[0] is ens.combiner
    x = torch.randn(8, 4)
    ens.write_gradients(ens.objectives((x,)), ens.objectives((x,)).detach())
    emas = [c.ema for c in rows.rows]
    assert len({tuple(e) for e in emas}) == 3  # each member's own loss history
    state = rows.state_dict()
    fresh = Stacked(EMAGram())
    fresh.row_combiners.load_state_dict(state)
    assert [c.ema for c in fresh.row_combiners.rows] == emas
    # a stateless combiner is shared by the members
    from moo_lightning.combiners import EPO

    shared = Stacked(EPO()).row_combiners
    assert len({id(c) for c in shared.rows}) == 1 and not keeps_state(EPO())
    with pytest.raises(ValueError, match="state for 3 combiner"):
        RowCombiners(EMAGram(), 2).load_state_dict(state)


def test_the_schedule_gives_the_warmup_combiner_first():
    from moo_lightning.combiners import MGDA, LinearScalarization

    main = RowCombiners(MGDA(), 2)
    schedule = CombinerSchedule(LinearScalarization(), warmup_steps=3)
    assert [c.name for c in schedule.combiners(2, main)] == ["ls", "ls"]
    assert [c.name for c in schedule.combiners(3, main)] == ["mgda", "mgda"]
    assert CombinerSchedule().combiners(0, main) == main.rows


def test_members_draw_their_own_random_numbers_and_row_0_draws_like_a_single_model():
    """Before: every member of an ensemble got the same RLW weights / PCGrad order each step."""
    from moo_lightning.combiners import RandomLossWeighting

    rows = RowCombiners(RandomLossWeighting(), 3)
    rows.set_seed(7)
    w = [c(torch.ones(2), None, [0.5, 0.5], step=4).weights for c in rows.rows]
    assert len({tuple(x.tolist()) for x in w}) == 3
    single = RandomLossWeighting()
    single.seed = 7
    assert torch.equal(single(torch.ones(2), None, [0.5, 0.5], step=4).weights, w[0])


def test_a_combiner_with_hidden_state_gets_one_copy_per_member():
    from moo_lightning.combiners import TorchJD

    rows = RowCombiners(TorchJD("GradVac"), 2)
    assert rows.rows[0] is not rows.rows[1]


def test_after_step_skips_a_fallen_back_row_and_counts_its_own_failures():
    from moo_lightning.combiners.base import Combined, SolverError

    class Fails(AfterStep):
        def after_step(self, losses):
            raise SolverError("no update")

    module = Tiny(AfterStep())
    module._used_combiners = [module.combiner]
    fell_back = [Combined(torch.ones(3), fallback=True)]
    module.after_step((torch.randn(4, 5),), fell_back)
    assert module.combiner.seen == []  # nothing to update from
    failing = Tiny(Fails(on_failure="ls"))
    failing._used_combiners = [failing.combiner]
    failing.after_step((torch.randn(4, 5),), [Combined(torch.ones(3))])
    assert failing.fallbacks == 1
    strict = Tiny(Fails())
    strict._used_combiners = [strict.combiner]
    with pytest.raises(SolverError):
        strict.after_step((torch.randn(4, 5),), [Combined(torch.ones(3))])


# --- the real combiners resume bit for bit --------------------------------------------------------

# Every stateful or random combiner of moo_lightning/conf/combiner/, built from its YAML, resumes
# bit for bit: the run killed after step 4 and resumed from its epoch-end checkpoint ends with the
# same parameters, the same combiner state and the same learnable combiner weights as the
# uninterrupted run (the check above, over the real combiners; one full batch per epoch, so a
# resume replays no data order).


@functools.cache
def _config(name: str, overrides: tuple[str, ...]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=[f"combiner={name}", *overrides])
    return cfg.combiner


def from_yaml(name: str, *overrides: str):
    """A factory of fresh combiners from <name>.yaml plus Hydra overrides (full keys)."""
    from hydra.utils import instantiate

    return lambda: instantiate(_config(name, overrides))


# settings that make the state matter within 8 steps (DWA's period, Nash-MTL's reuse)
STATEFUL = {
    "nash_mtl": from_yaml("nash_mtl", "combiner.update_weights_every=3"),
    "gradvac": from_yaml("gradvac"),
    "dwa": from_yaml("dwa", "combiner.period=2"),
    "uw": from_yaml("uw"),
    "famo": from_yaml("famo"),
    "cr_mogm[gradvac]": from_yaml("cr_mogm", "combiner/inner=gradvac"),
    "cr_mogm[famo]": from_yaml("cr_mogm", "combiner/inner=famo"),
    "pcgrad": from_yaml("pcgrad"),
    "rlw": from_yaml("rlw"),
}


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and not (a and isinstance(a[0], (int, float))):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is b
    return torch.equal(torch.as_tensor(a), torch.as_tensor(b))


@pytest.mark.parametrize("name", list(STATEFUL))
def test_a_resumed_run_continues_bit_for_bit_with_the_real_combiners(name, tmp_path):
    factory = STATEFUL[name]
    whole, _ = _fit(factory(), 8, checkpoints=tmp_path)
    resumed, _ = _fit(factory(), 8, ckpt_path=str(tmp_path / "epoch=3-step=4.ckpt"))
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    state, other = whole.combiner.state_dict(), resumed.combiner.state_dict()
    assert same(state, other), (state, other)
    for a, b in zip(whole.combiner.parameters(), resumed.combiner.parameters(), strict=True):
        assert torch.equal(a, b)
    # the state did move: a resume that dropped it would not pass unnoticed
    fresh = factory()
    fresh.prepare(3)
    if name not in ("pcgrad", "rlw"):
        moved = not same(fresh.state_dict(), state) or any(
            not torch.equal(a, b)
            for a, b in zip(fresh.parameters(), whole.combiner.parameters(), strict=True)
        )
        assert moved, name


def test_the_random_combiners_draw_from_the_step_not_the_call_count():
    """What makes pcgrad and rlw resumable without state: the same (seed, step) gives the
    same weights in a fresh combiner."""
    rng = np.random.default_rng(0)
    G = rng.standard_normal((3, 5))
    K = torch.tensor(G @ G.T)
    for name in ("pcgrad", "rlw"):
        a, b = STATEFUL[name](), STATEFUL[name]()
        a.seed = b.seed = 11
        for step in range(3):
            a(torch.ones(3, dtype=torch.float64), K, [1, 1, 1], step=step)
        wa = a(torch.ones(3, dtype=torch.float64), K, [1, 1, 1], step=5).weights
        wb = b(torch.ones(3, dtype=torch.float64), K, [1, 1, 1], step=5).weights
        assert torch.equal(wa, wb), name


# --- scale-dependent combiners under an inexact gradient scope --------------------------------


@pytest.mark.parametrize(
    ("combiner", "scope", "fragment"),
    [
        (NashMTL(), "representation", "'nash_mtl' with module.gradient_scope=representation"),
        (FairGrad(), ["head"], "'fairgrad' with module.gradient_scope=[head]"),
        (PNG(e=1e-3), "representation", "'png' with module.gradient_scope=representation"),
        (UPGrad(norm_eps=1e-4), ["a", "b"], "'upgrad' with module.gradient_scope=[a,b]"),
        (CRMOGM(NashMTL()), "representation", "'cr_mogm[nash_mtl]' with"),
    ],
)
def test_a_scale_dependent_combiner_under_an_inexact_scope_is_said(combiner, scope, fragment):
    """Weights that depend on the Gram's scale, computed from a Gram of other gradients than the
    ones the weighted backward combines: one warning naming the combiner and the scope."""
    why = scale_dependence(combiner, GradientScope.parse(scope))
    assert why is not None and fragment in why and "\n" not in why
    assert "gradient_scope=all is exact" in why
    with pytest.warns(UserWarning, match="depend on the Gram matrix's scale"):
        warn_scale_dependence(combiner, GradientScope.parse(scope))


@pytest.mark.parametrize(
    ("combiner", "scope"),
    [
        (NashMTL(), "all"),  # exact: the weights meet the gradients they were computed from
        (NashMTL(), "shared"),  # the trunk's Gram, the trunk's gradients
        (PNG(e=1e-3), "all"),
        (PNG(e=0.0), "representation"),  # scale-invariant
        (UPGrad(), "representation"),
        (MGDA(), ["head"]),
        (LinearScalarization(), "representation"),  # no Gram
    ],
)
def test_exact_scopes_and_scale_invariant_combiners_are_not_warned_about(combiner, scope):
    assert scale_dependence(combiner, GradientScope.parse(scope)) is None
