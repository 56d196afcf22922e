"""2-process DDP (CPU, gloo) = 1 process for every stateful or random combiner: the weights of
every step, the final parameters, and the combiner's final state and learnable weights."""

import numpy as np
import pytest
import torch

from tests.integration.ddp_combiner_helpers import train

# (config, Hydra overrides): settings that make the state matter within 16 steps
STATEFUL = {
    "nash_mtl": ("nash_mtl", ("combiner.update_weights_every=3",)),
    "gradvac": ("gradvac", ()),
    "dwa": ("dwa", ("combiner.period=3",)),
    # before: UW's log-variances moved twice as far with 2 ranks (ddp_spawn handed both ranks
    # one shared-memory copy; the module now gives each process its own)
    "uw": ("uw", ()),
    "famo": ("famo", ()),
    "cr_mogm[gradvac]": ("cr_mogm", ("combiner/inner=gradvac",)),
    "cr_mogm[famo]": ("cr_mogm", ("combiner/inner=famo",)),
    "pcgrad": ("pcgrad", ()),
    "rlw": ("rlw", ()),
}


def _load(path):
    return torch.load(path, weights_only=False)


def _close(a, b, exact: bool, what: str):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _close(a[k], b[k], exact, f"{what}.{k}")
    elif a is None or b is None:
        assert a is b, what
    elif isinstance(a, list | tuple) and a and isinstance(a[0], torch.Tensor):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, exact, f"{what}[{i}]")
    else:
        a, b = np.asarray(torch.as_tensor(a)), np.asarray(torch.as_tensor(b))
        if exact:
            np.testing.assert_array_equal(a, b, err_msg=what)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=what)


@pytest.mark.slow
@pytest.mark.parametrize("spec", list(STATEFUL.values()), ids=list(STATEFUL))
def test_ddp_matches_single_process_with_the_combiners_state(spec, tmp_path):
    name, overrides = spec
    case = name
    single, double = tmp_path / "single", tmp_path / "double"
    single.mkdir()
    double.mkdir()
    train(name, overrides, 1, str(single))
    train(name, overrides, 2, str(double))
    ref, r0, r1 = (_load(p) for p in (single / "rank0_of1.pt", double / "rank0_of2.pt",
                                       double / "rank1_of2.pt"))  # fmt: skip
    # ranks never disagree on the weights, and agree with the single-process run
    torch.testing.assert_close(r0["weights"], r1["weights"], rtol=0, atol=0)
    torch.testing.assert_close(r0["weights"], ref["weights"], rtol=1e-6, atol=1e-6)
    for a, b, c in zip(ref["params"], r0["params"], r1["params"], strict=True):
        torch.testing.assert_close(b, c, rtol=0, atol=0)
        assert (a - b).abs().max() <= 1e-6
    c_ref, c0, c1 = (_load(p) for p in (single / "combiner0_of1.pt", double / "combiner0_of2.pt",
                                         double / "combiner1_of2.pt"))  # fmt: skip
    _close(c0, c1, exact=True, what=f"{case}: rank 0 vs rank 1")
    _close(c0, c_ref, exact=False, what=f"{case}: 2 processes vs 1")
