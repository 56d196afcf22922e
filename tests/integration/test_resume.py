"""A run killed with SIGKILL half way and resumed with ckpt_path=last ends exactly where the
uninterrupted run ends (weights bit for bit, metrics equal)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import ROOT, write_glue


def _cmd(data, run_dir, *extra):
    return [
        sys.executable,
        "train.py",
        "task=sst2",
        "encoder=tiny",
        f"data.path={data}",
        "data.num_train=40",
        "trainer.max_steps=90",
        "trainer.val_check_interval=9",
        "optimizer.lr=3e-3",
        "logger=none",
        "callbacks=resume",
        "combiner=epo",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    data = write_glue(tmp_path / "sst2", "sst2", n_train=80, n_val=60)
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(_cmd(data, full), cwd=ROOT, check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(
        _cmd(data, cut), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = cut / "checkpoints" / "last.ckpt"
    deadline = time.time() + 600
    while time.time() < deadline:  # kill once three epochs are saved (of thirty)
        if last.exists():
            try:
                if torch.load(last, weights_only=False, map_location="cpu")["epoch"] >= 2:
                    break
            except Exception:
                pass  # being written
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "metrics.json").exists()  # it really died before finishing

    subprocess.run(
        _cmd(data, cut, "ckpt_path=last"), cwd=ROOT, check=True, capture_output=True, timeout=600
    )
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, cut))
    for key in ("val/acc_best", "test/acc", "combiner_fallbacks", "skipped_steps"):
        assert a[key] == b[key], key
    sa = torch.load(full / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    sb = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
