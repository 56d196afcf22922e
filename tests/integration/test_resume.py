"""A run killed with SIGKILL half way and resumed with ckpt_path=last ends exactly where the
uninterrupted run ends (weights bit for bit, metrics equal)."""

import json
import os
import shutil
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

    proc = subprocess.Popen(  # with the CSV log: its part before the kill must survive
        _cmd(data, cut, "logger=csv"), cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
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
    first_log = cut / "csv" / "metrics.csv"
    before = first_log.read_bytes() if first_log.exists() else None

    subprocess.run(
        _cmd(data, cut, "ckpt_path=last", "logger=csv"), cwd=ROOT, check=True,
        capture_output=True, timeout=600,
    )  # fmt: skip
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, cut))
    # the probe's KN17 with a real SIGKILL: the log of the steps before it is kept as it was,
    # the resumed steps go to a part of their own, and the record lists the parts in order
    assert b["logs"][-1] == "csv/resume1/metrics.csv", b["logs"]
    if before is not None:
        assert first_log.read_bytes() == before and b["logs"][0] == "csv/metrics.csv"
    for key in ("val/acc_best", "test/acc", "combiner_fallbacks", "skipped_steps"):
        assert a[key] == b[key], key
    sa = torch.load(full / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    sb = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _tiny(data, run_dir, *extra):
    return [
        sys.executable, "train.py", "task=sst2", "encoder=tiny", f"data.path={data}",
        "data.num_train=20", "trainer.max_steps=4", "trainer.val_check_interval=2",
        "callbacks=resume", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}",
        *extra,
    ]  # fmt: skip


def _run(cmd):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume_cases")
    data = write_glue(base / "sst2", "sst2")
    run_dir = base / "run"
    proc = _run(_tiny(data, run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data, run_dir


def test_resuming_a_finished_run_is_refused_and_its_record_kept(finished):
    """Before: exit 0, status ok, and metrics.json lost val/acc_best (null)."""
    data, run_dir = finished
    before = (run_dir / "metrics.json").read_bytes()
    assert json.loads(before)["val/acc_best"] is not None
    proc = _run(_tiny(data, run_dir, "ckpt_path=last"))
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert (
        len(err) == 1 and "holds a finished run (status ok); there is nothing to resume" in err[0]
    )
    assert (run_dir / "metrics.json").read_bytes() == before


def test_a_run_killed_while_testing_resumes_to_the_uninterrupted_record(finished, tmp_path):
    """Killed after its last checkpoint, before metrics.json (during testing): the resumed run
    records the same validation history, best validation, final training losses and test
    result as the uninterrupted run; the earlier CSV log is kept and a new part is added.
    Before: status ok with no val/acc_best and final_train_losses null; the CSV log deleted."""
    import shutil

    data, run_dir = finished
    killed = tmp_path / "killed"
    shutil.copytree(run_dir, killed)
    (killed / "metrics.json").unlink()  # what a kill before the record leaves
    for path in killed.glob("model.ckpt*"):
        path.unlink()
    first_log = (killed / "csv" / "metrics.csv").read_bytes()
    proc = _run(_tiny(data, killed, "ckpt_path=last", "logger=csv"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    whole = json.loads((run_dir / "metrics.json").read_text())
    resumed = json.loads((killed / "metrics.json").read_text())
    for key in ("status", "val/acc_best", "val/acc", "val_history", "final_train_losses",
                "best_step", "test/acc", "steps"):  # fmt: skip
        assert resumed[key] == whole[key], key
    assert resumed["final_train_losses"] is not None
    assert (killed / "csv" / "metrics.csv").read_bytes() == first_log  # kept, not deleted
    assert resumed["logs"] == ["csv/metrics.csv", "csv/resume1/metrics.csv"]


def test_ckpt_path_last_with_nothing_to_resume_is_refused(finished, tmp_path):
    """Before: Lightning trained from scratch with a warning, and the run looked resumed."""
    data, _ = finished
    proc = _run(_tiny(data, tmp_path / "fresh", "ckpt_path=last"))
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "ckpt_path=last: no checkpoint in" in err[0], proc.stderr[-2000:]
    assert not (tmp_path / "fresh" / "metrics.json").exists()


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_a_sweep_resumed_with_ckpt_path_last_skips_its_finished_jobs(tmp_path):
    """`-m … ckpt_path=last` over a sweep whose jobs are partly finished: the finished ones are
    skipped and left as they are, the interrupted one resumes, one that never started starts.
    Before: the first finished job was refused and the whole sweep stopped there."""
    data = write_glue(tmp_path / "sst2", "sst2")
    sweep = tmp_path / "sweep"

    def multirun(*extra):
        cmd = _tiny(data, tmp_path / "unused", *extra)
        cmd = [c for c in cmd if not c.startswith("hydra.run.dir=")]
        return _run([*cmd[:2], "-m", *cmd[2:], f"hydra.sweep.dir={sweep}", "seed=0,1,2"])

    proc = multirun()
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 3
    shutil.rmtree(jobs[2])  # job 3 "never started": no folder, no checkpoint
    kept = (jobs[0] / "metrics.json").read_bytes()
    whole = json.loads((jobs[1] / "metrics.json").read_text())
    (jobs[1] / "metrics.json").unlink()  # job 2 "killed" after its last checkpoint
    for path in jobs[1].glob("model.ckpt*"):
        path.unlink()
    proc = multirun("ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (jobs[0] / "metrics.json").read_bytes() == kept  # skipped, untouched
    resumed = json.loads((jobs[1] / "metrics.json").read_text())
    assert resumed["status"] == "ok" and resumed["test/acc"] == whole["test/acc"]
    assert "already holds this job's result" in proc.stdout + proc.stderr
    fresh = json.loads((jobs[2] / "metrics.json").read_text())  # started from scratch
    assert fresh["status"] == "ok" and "no checkpoint to resume from" in proc.stdout + proc.stderr
