"""Every stateful or random combiner of moo_lightning/conf/combiner/, built from its YAML, resumes
bit for bit: the run killed after step 4 and resumed from its epoch-end checkpoint ends with the
same parameters, the same combiner state and the same learnable combiner weights as the
uninterrupted run (tests/unit/test_step.py's check, over the real combiners; one full batch per
epoch, so a resume replays no data order)."""

import functools

import numpy as np
import pytest
import torch

from tests.helpers import CONF
from tests.unit.test_step import _fit


@functools.cache
def _config(name: str, overrides: tuple[str, ...]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=[f"combiner={name}", *overrides])
    return cfg.combiner


def make(name: str, *overrides: str):
    """A factory of fresh combiners from <name>.yaml plus Hydra overrides (full keys)."""
    from hydra.utils import instantiate

    return lambda: instantiate(_config(name, overrides))


# settings that make the state matter within 8 steps (DWA's period, Nash-MTL's reuse)
STATEFUL = {
    "nash_mtl": make("nash_mtl", "combiner.update_weights_every=3"),
    "gradvac": make("gradvac"),
    "dwa": make("dwa", "combiner.period=2"),
    "uw": make("uw"),
    "famo": make("famo"),
    "cr_mogm[gradvac]": make("cr_mogm", "combiner/inner=gradvac"),
    "cr_mogm[famo]": make("cr_mogm", "combiner/inner=famo"),
    "pcgrad": make("pcgrad"),
    "rlw": make("rlw"),
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
