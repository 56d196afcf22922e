"""DDP from the command line: train.py itself with trainer=ddp on 2 CPU processes (gloo), real
SST-2 rows, encoder=tiny. One metrics.json; the final weights equal a 1-process run over the same
global batches; the reported test accuracy is that of the final weights on the whole test half."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT

SST2 = ROOT.parent / "shared" / "data" / "glue_hf" / "sst2"
pytestmark = pytest.mark.skipif(not SST2.is_dir(), reason="needs ../shared/data/glue_hf/sst2")


def _train(run_dir: Path, combiner: str, *trainer: str) -> dict:
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


def _compare(combiner: str, tmp_path: Path) -> None:
    ddp = _train(
        tmp_path / "ddp", combiner, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"
    )
    one = _train(tmp_path / "one", combiner, "trainer=cpu")
    assert one["val_history"][-1][0] == 4
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, worst
    acc, total = _test_accuracy_in_one_process(a)
    assert ddp["test/examples"] == one["test/examples"] == total  # each example counted once
    assert ddp["test/acc"] == pytest.approx(acc, abs=1e-6)  # float32 of the same fraction
    assert ddp["combiner"] == combiner and ddp["val_history"][-1][0] == 4


@pytest.mark.slow
def test_ddp_command_line_matches_one_process_epo(tmp_path):
    _compare("epo", tmp_path)


@pytest.mark.slow
def test_ddp_command_line_matches_one_process_ls(tmp_path):
    _compare("ls", tmp_path)


README_DDP = "python train.py task=sst2 combiner=epo trainer=ddp trainer.devices=2"


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
