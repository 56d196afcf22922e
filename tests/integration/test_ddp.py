"""2-process DDP (CPU, gloo) ends where a 1-process run on the same global batches ends."""

import pytest
import torch

from tests.integration.ddp_helpers import train


def _load(path):
    return torch.load(path, weights_only=False)


def _compare(combiner, tmp_path, scope="all"):
    single, double = tmp_path / "single", tmp_path / "double"
    single.mkdir()
    double.mkdir()
    train(combiner, 1, str(single), scope)
    train(combiner, 2, str(double), scope)
    ref = _load(single / "rank0_of1.pt")
    r0, r1 = _load(double / "rank0_of2.pt"), _load(double / "rank1_of2.pt")
    # ranks never disagree on the weights, and agree with the single-process run
    torch.testing.assert_close(r0["weights"], r1["weights"], rtol=0, atol=0)
    torch.testing.assert_close(r0["weights"], ref["weights"], rtol=1e-6, atol=1e-6)
    for a, b, c in zip(ref["params"], r0["params"], r1["params"]):
        torch.testing.assert_close(b, c, rtol=0, atol=0)
        assert (a - b).abs().max() <= 1e-6


def test_ddp_matches_single_process_epo(tmp_path):
    _compare("epo", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("combiner", ["ls", "mgda", "png"])
def test_ddp_matches_single_process(combiner, tmp_path):
    _compare(combiner, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["representation", ["heads"]])
def test_ddp_scoped_matches_single_process(scope, tmp_path):
    _compare("mgda", tmp_path, scope)
