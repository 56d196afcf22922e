"""2-process DDP (CPU, gloo) ends where a 1-process run on the same global batches ends."""

import pytest
import torch

from tests.integration.ddp_helpers import train


def _load(path):
    return torch.load(path, weights_only=False)


def _run(combiner, tmp_path, scope="all", contrastive=None, criterion=False):
    single, double = tmp_path / "single", tmp_path / "double"
    single.mkdir()
    double.mkdir()
    train(combiner, 1, str(single), scope, contrastive, criterion)
    train(combiner, 2, str(double), scope, contrastive, criterion)
    ref = _load(single / "rank0_of1.pt")
    return ref, _load(double / "rank0_of2.pt"), _load(double / "rank1_of2.pt")


def _compare(combiner, tmp_path, scope="all", contrastive=None, criterion=False):
    ref, r0, r1 = _run(combiner, tmp_path, scope, contrastive, criterion)
    # ranks never disagree on the weights, and agree with the single-process run
    torch.testing.assert_close(r0["weights"], r1["weights"], rtol=0, atol=0)
    torch.testing.assert_close(r0["weights"], ref["weights"], rtol=1e-6, atol=1e-6)
    for a, b, c in zip(ref["params"], r0["params"], r1["params"]):
        torch.testing.assert_close(b, c, rtol=0, atol=0)
        assert (a - b).abs().max() <= 1e-6


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
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


@pytest.mark.parametrize("combiner", [pytest.param("epo", marks=pytest.mark.slow)])
def test_ddp_global_batch_contrastive_matches_single_process(combiner, tmp_path):
    # ℓ_pos / ℓ_neg over the all-gathered embeddings: 2 × 8 examples = 1 process × 16
    _compare(combiner, tmp_path, contrastive="global")


@pytest.mark.slow
@pytest.mark.parametrize(("combiner", "scope"), [("ls", "all"), ("mgda", "representation")])
def test_ddp_global_batch_contrastive_other_paths(combiner, scope, tmp_path):
    _compare(combiner, tmp_path, scope, contrastive="global")


@pytest.mark.slow
def test_ddp_per_rank_contrastive_differs_from_global_batch(tmp_path):
    # without the all-gather each rank's contrastive term sees 8 examples: a different loss, so
    # the runs must part (the test above would catch a gather that does nothing)
    ref, r0, r1 = _run("epo", tmp_path, contrastive="local")
    torch.testing.assert_close(r0["weights"], r1["weights"], rtol=0, atol=0)
    gap = max((a - b).abs().max().item() for a, b in zip(ref["params"], r0["params"]))
    assert gap > 1e-4


@pytest.mark.slow
def test_gather_global_batch_uneven_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    from tests.integration.ddp_helpers import gather_worker

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(gather_worker, args=(2, port, str(tmp_path)), nprocs=2)
    out = [_load(tmp_path / f"gather{r}.pt") for r in range(2)]
    expected_y = torch.tensor([0] * 3 + [1] * 5)
    for r, o in enumerate(out):
        assert o["z_all"].shape == (8, 4)
        torch.testing.assert_close(o["y_all"], expected_y)
        torch.testing.assert_close(o["z_all"][:, 0], expected_y.float())
        rows = slice(0, 3) if r == 0 else slice(3, 8)
        torch.testing.assert_close(o["grad"], 2 * o["coeff"][rows])


@pytest.mark.slow
@pytest.mark.parametrize("combiner", ["png", "ls"])
def test_ddp_parameter_criterion_matches_single_process(combiner, tmp_path):
    """A criterion of the parameters (the features' mean square): its gradient is reduced like
    the objectives' (PNG steers by it; LS adds it as a regulariser, criterion_weight 0.5)."""
    _compare(combiner, tmp_path, criterion=True)
