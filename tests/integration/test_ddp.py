"""DDP on 2 CPU processes (gloo) ends where 1 process on the same global batches ends: the
module's step with every scope and contrastive path (ddp_helpers.py), every stateful or random
combiner with its final state and learnable weights (ddp_combiner_helpers.py; marker
combiners), the domain-generalisation discriminator's step (ddp_dg_helpers.py), and train.py
itself with trainer=ddp on real SST-2 rows (one metrics.json; the final weights equal a
1-process run's; the reported test accuracy is that of the final weights on the whole test
half)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import ROOT
from tests.integration.ddp_combiner_helpers import train as train_stateful
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
@pytest.mark.parametrize("scope", ["shared", "representation", ["heads"]])
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


@pytest.mark.slow
def test_ddp_ranks_step_the_discriminator_together_on_the_mean_gradient(tmp_path):
    """JiGen + adv / + PNG: every rank steps D on its share's class-balanced BCE gradient, all
    of them averaged; a rank whose share holds one kind of image adds zeros (so the ranks'
    collective calls stay paired), and when no rank has both kinds nobody steps."""
    import socket

    import torch.multiprocessing as mp

    from moo_lightning.tasks.dg.module import discriminator_loss
    from tests.integration import ddp_dg_helpers as h

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(h.run, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (_load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for k in r0["state"]:
        torch.testing.assert_close(r0["state"][k], r1["state"][k], rtol=0, atol=0)
    assert [s is not None for s in r0["stepped"]] == [True, True, False]
    assert [s is not None for s in r1["stepped"]] == [True, False, False]
    assert set(r0["adam_steps"]) == {2}  # steps 0 and 1 only
    # one process doing the same: Adam on the mean of the ranks' gradients (zeros for a share
    # without both kinds)
    m = h.jigsaw_module()
    params = list(m.discriminator.parameters())
    opt = torch.optim.Adam(params, lr=m.discriminator_lr, betas=(0.5, 0.999))
    for step in range(h.STEPS):
        shares = [h.features(step, r, m.backbone.out_features) for r in (0, 1)]
        if all(share is None for share in shares):
            continue
        mean = [torch.zeros_like(p) for p in params]
        for share in shares:
            if share is not None:
                grads = torch.autograd.grad(
                    discriminator_loss(m.discriminator(share[0]), share[1]), params
                )
                mean = [a + g / 2 for a, g in zip(mean, grads)]
        for p, g in zip(params, mean):
            p.grad = g
        opt.step()
    for k, v in m.discriminator.state_dict().items():
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-6, atol=1e-7)


# --- every stateful or random combiner, with its state (marker combiners) -------------------------


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


@pytest.mark.combiners
@pytest.mark.slow
@pytest.mark.parametrize("spec", list(STATEFUL.values()), ids=list(STATEFUL))
def test_ddp_matches_single_process_with_the_combiners_state(spec, tmp_path):
    name, overrides = spec
    case = name
    single, double = tmp_path / "single", tmp_path / "double"
    single.mkdir()
    double.mkdir()
    train_stateful(name, overrides, 1, str(single))
    train_stateful(name, overrides, 2, str(double))
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


# --- train.py trainer=ddp: real SST-2 rows, encoder=tiny ------------------------------------------


SST2 = ROOT.parent / "shared" / "data" / "glue_hf" / "sst2"


needs_sst2 = pytest.mark.skipif(not SST2.is_dir(), reason="needs ../shared/data/glue_hf/sst2")


def _train_cli(run_dir: Path, combiner: str, *trainer: str) -> dict:
    cmd = [
        sys.executable,
        "train.py",
        "task=sst2",
        "encoder=tiny",
        f"data.path={SST2}",
        "data.num_train=32",  # two global batches of 16 per epoch: 8 + 8 per rank
        f"combiner={combiner}",
        "objective.global_batch=true",  # contrastive terms over both ranks' rows
        "encoder.dropout=0",
        "module.dropout=0",  # no randomness that depends on how rows are split
        # AdamW moves each weight by about lr per step whatever the gradient's scale, so float
        # rounding in near-zero gradient entries (sums in another order over 8 + 8 rows than over
        # 16) reaches the weights in proportion to lr: 1e-4 keeps it below 1e-6 (1e-3: 1.7e-6)
        # while every weight still moves by ~4e-4 in the 4 steps
        "optimizer.lr=1e-4",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",  # one validation, at the end: best = final weights
        "callbacks=resume",  # checkpoints/last.ckpt holds the final weights
        "logger=csv",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
        *trainer,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(run_dir.rglob("metrics.json"))) == 1
    return json.loads((run_dir / "metrics.json").read_text())


def _weights(run_dir: Path) -> dict:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["state_dict"]


def _test_accuracy_in_one_process(state_dict: dict) -> tuple[float, int]:
    """The final weights evaluated on the whole test half by a plain loop in this process."""
    from moo_lightning.tasks.glue.data import GlueFewShot
    from moo_lightning.tasks.glue.encoders import Backbone, TextClassifier

    torch.manual_seed(0)
    backbone = Backbone("tiny", dropout=0.0)
    model = TextClassifier(backbone, num_labels=2, dropout=0.0)
    model.load_state_dict({k.removeprefix("classifier."): v for k, v in state_dict.items()})
    data = GlueFewShot("sst2", backbone.tokenizer, path=str(SST2), num_train=32, cache=False)
    data.setup()
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for batch in data.test_dataloader():
            pred = model(batch["input_ids"], batch["attention_mask"])[0].argmax(-1)
            correct += int((pred == batch["labels"]).sum())
            total += len(batch["labels"])
    assert total == len(data.splits["test"])
    return correct / total, total


def _compare_cli(combiner: str, tmp_path: Path) -> None:
    ddp = _train_cli(
        tmp_path / "ddp", combiner, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"
    )
    one = _train_cli(tmp_path / "one", combiner, "trainer=cpu")
    assert one["val_history"][-1][0] == 4
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, worst
    acc, total = _test_accuracy_in_one_process(a)
    assert ddp["test/examples"] == one["test/examples"] == total  # each example counted once
    assert ddp["test/acc"] == pytest.approx(acc, abs=1e-6)  # float32 of the same fraction
    assert ddp["combiner"] == combiner and ddp["val_history"][-1][0] == 4


@needs_sst2
@pytest.mark.slow
def test_ddp_command_line_matches_one_process_epo(tmp_path):
    _compare_cli("epo", tmp_path)


@needs_sst2
@pytest.mark.slow
def test_ddp_command_line_matches_one_process_ls(tmp_path):
    _compare_cli("ls", tmp_path)


README_DDP = "python train.py task=sst2 combiner=epo trainer=ddp trainer.devices=2"


@needs_sst2
@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_the_readme_ddp_command_runs(tmp_path):
    assert README_DDP in (ROOT / "README.md").read_text()
    # the README's command as written, plus what a CPU test machine without the hub needs
    offline = [
        "trainer.accelerator=cpu",
        "encoder=tiny",
        f"data.path={SST2}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
    ]
    cmd = [sys.executable, *README_DDP.split()[1:], *offline]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["test/examples"] == 436 and m["val_history"][0][0] == 2
    # the same command again: every rank sees the finished job and skips it (none waits for a
    # rank 0 that is not coming)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already holds this job's result" in again.stdout + again.stderr
    assert json.loads((tmp_path / "metrics.json").read_text()) == m


@needs_sst2
@pytest.mark.slow
def test_a_sweep_job_is_one_ddp_run_with_the_local_submitit_layout(tmp_path):
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "hydra/launcher=local_ddp",
        "task=sst2",
        "encoder=tiny",
        f"data.path={SST2}",
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "logger=none",
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = sorted(tmp_path.glob("*/metrics.json"))
    assert len(found) == 2  # one per job, written by rank 0 of each
    for path in found:
        assert json.loads(path.read_text())["test/examples"] == 436
    logs = "".join(p.read_text() for p in tmp_path.glob(".submitit/*/*_log.*"))
    assert logs.count("Starting with 2 processes") >= 2  # each job joined its 2 tasks
    # re-run: both tasks of each job see the finished result and skip it together
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(json.loads(p.read_text())["test/examples"] == 436 for p in found)
