"""Resuming, and what is never re-run: a run killed with SIGKILL half way and resumed with
ckpt_path=last ends exactly where the uninterrupted run ends (weights bit for bit, metrics equal);
the learning-rate schedule is restored; a finished run is not resumed, and a sweep run again skips
its finished jobs. Checkpoints are read as data only and checked against their checksums, and a
finished job is never overwritten by other settings (marker trust)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import (
    ROOT,
    TINY,
    last_line,
    quick_sweep,
    run_cmd,
    sst2_cmd,
    sst2_steps,
    strict_json,
    train_in,
    train_py,
    write_glue,
)


def _sigkill_cmd(data, run_dir, *extra):
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
    subprocess.run(_sigkill_cmd(data, full), cwd=ROOT, check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(  # with the CSV log: its part before the kill must survive
        _sigkill_cmd(data, cut, "logger=csv"), cwd=ROOT, stdout=subprocess.DEVNULL,
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

    resumed = subprocess.run(
        _sigkill_cmd(data, cut, "ckpt_path=last", "logger=csv"), cwd=ROOT, check=True,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "cannot restore its place" not in resumed.stdout + resumed.stderr  # it resumes its order
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


def test_a_checkpoint_taken_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    """GLUE validates (and so checkpoints) every val_check_interval steps, not at epoch ends: with
    5 batches per epoch and validation every 3 steps, the checkpoint of step 12 lies after the
    second batch of the last epoch (steps 11-15). Resumed from it (into another folder), the
    run must take the epoch's remaining batches, with the dropout masks the uninterrupted run
    drew, end on its weights, and record the last epoch's mean losses across the cut."""
    data = write_glue(tmp_path / "sst2", "sst2", n_train=100, n_val=40)
    common = [
        sys.executable, "train.py", "task=sst2", "encoder=tiny", f"data.path={data}",
        "data.num_train=80",  # 5 batches of 16 per epoch
        "trainer.max_steps=15", "trainer.val_check_interval=3", "optimizer.lr=3e-3",
        "logger=none", "callbacks=resume", "callbacks.last.save_top_k=-1",  # keep every one
        "test=false", "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    proc = run_cmd([*common, f"hydra.run.dir={full}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    mid = full / "checkpoints" / "epoch=2-step=12.ckpt"
    assert mid.exists(), sorted(p.name for p in (full / "checkpoints").iterdir())
    proc = run_cmd([*common, f"hydra.run.dir={resumed}", f"ckpt_path='{mid}'"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not resumable" not in proc.stderr  # Lightning's warning for a mid-epoch restart
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, resumed))
    assert a["steps"] == b["steps"] == 15 and a["val/acc_best"] == b["val/acc_best"]
    assert a["final_train_losses"] == b["final_train_losses"]  # the last epoch, across the cut
    sa = torch.load(full / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    sb = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _tiny(data, run_dir, *extra):
    return [
        sys.executable, "train.py", "task=sst2", "encoder=tiny", f"data.path={data}",
        "data.num_train=20", "trainer.max_steps=4", "trainer.val_check_interval=2",
        "callbacks=resume", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume_cases")
    data = write_glue(base / "sst2", "sst2")
    run_dir = base / "run"
    proc = run_cmd(_tiny(data, run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data, run_dir


def test_resuming_a_finished_run_is_refused_and_its_record_kept(finished):
    """Before: exit 0, status ok, and metrics.json lost val/acc_best (null)."""
    data, run_dir = finished
    before = (run_dir / "metrics.json").read_bytes()
    assert json.loads(before)["val/acc_best"] is not None
    proc = run_cmd(_tiny(data, run_dir, "ckpt_path=last"))
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
    proc = run_cmd(_tiny(data, killed, "ckpt_path=last", "logger=csv"))
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
    proc = run_cmd(_tiny(data, tmp_path / "fresh", "ckpt_path=last"))
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
        return run_cmd([*cmd[:2], "-m", *cmd[2:], f"hydra.sweep.dir={sweep}", "seed=0,1,2"])

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


@pytest.mark.slow  # make test-slow: kept out of the 4-minute default run
def test_rerunning_a_sweep_skips_complete_jobs(sst2, tmp_path):
    args = quick_sweep(sst2, tmp_path)
    first = train_py(args)
    assert first.returncode == 0, first.stderr[-2000:]
    paths = sorted(tmp_path.glob("*/metrics.json"))
    assert len(paths) == 2
    stamp = [p.stat().st_mtime_ns for p in paths]
    paths[1].unlink()  # as if the second job had been killed
    again = train_py(args)
    assert again.returncode == 0
    assert "already holds this job's result" in again.stdout + again.stderr
    assert paths[0].stat().st_mtime_ns == stamp[0]  # untouched
    assert paths[1].exists()  # re-run


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_resume_restores_the_schedule(run_train, tmp_path):
    """An 8-step run against the same run resumed from its step-4 checkpoint: equal final weights
    (the linear schedule's learning rate at steps 5-8 depends on its restored state)."""
    glue = write_glue(tmp_path / "sst2", "sst2")
    common = sst2_steps(
        glue,
        "trainer.max_steps=8",
        "trainer.val_check_interval=2",
        "callbacks=resume",
        "callbacks.last.save_top_k=-1",  # keep every epoch's checkpoint
        "combiner=epo",
    )
    full = run_train(*common)
    ckpts = sorted((tmp_path / "x").parent.glob("**/checkpoints/epoch=1-step=4.ckpt"))
    assert len(ckpts) == 1, ckpts
    state = torch.load(ckpts[0], weights_only=False, map_location="cpu")
    assert state["lr_schedulers"][0]["last_epoch"] == 4
    resumed = run_train(*common, f"ckpt_path='{ckpts[0]}'", "seed=0")
    a = torch.load(f"{full['run_dir']}/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(f"{resumed['run_dir']}/checkpoints/last.ckpt", weights_only=False)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 8
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert full["val_history"] == resumed["val_history"]

    # control (the comparison has power): the same checkpoint with its schedule restarted
    state["lr_schedulers"][0]["last_epoch"] = 0
    state["lr_schedulers"][0]["_step_count"] = 1
    reset = tmp_path / "reset.ckpt"
    torch.save(state, reset)
    other = run_train(*common, f"ckpt_path='{reset}'")
    c = torch.load(f"{other['run_dir']}/checkpoints/last.ckpt", weights_only=False)
    assert not all(torch.equal(a["state_dict"][k], c["state_dict"][k]) for k in a["state_dict"])


# --- checkpoints are data; finished jobs are kept (marker trust) ----------------------------------


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.trust
def test_a_crafted_checkpoint_runs_no_code(sst2, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload(marker)}, ckpt)
    proc = run_cmd(sst2_cmd(sst2, tmp_path / "run", f"ckpt_path={ckpt}"))
    assert proc.returncode != 0
    assert not marker.exists()  # the payload never ran
    assert "Traceback" not in proc.stderr and "weights" in last_line(proc).lower()


@pytest.mark.trust
def test_remote_checkpoints_are_refused_without_touching_the_network(sst2, tmp_path):
    proc = run_cmd(sst2_cmd(sst2, tmp_path / "run", "ckpt_path=http://127.0.0.1:9/x.ckpt"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "remote checkpoints are not loaded" in last_line(proc)


@pytest.mark.trust
@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_resuming_with_another_combiner_is_refused(sst2, tmp_path):
    run = tmp_path / "run"
    assert run_cmd(sst2_cmd(sst2, run, "callbacks=resume", "combiner=epo")).returncode == 0
    (run / "metrics.json").unlink()  # an interrupted run (a finished one is never resumed)
    proc = run_cmd(sst2_cmd(sst2, run, "callbacks=resume", "combiner=ls", "ckpt_path=last"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    line = last_line(proc)
    assert "other settings" in line and "combiner._target_" in line
    assert not (run / "metrics.json").exists()  # nothing written


@pytest.mark.trust
@pytest.mark.slow  # make test-slow: kept out of the 4-minute default run
def test_a_changed_checkpoint_is_refused_by_its_checksum(sst2, tmp_path):
    run = tmp_path / "run"
    assert run_cmd(sst2_cmd(sst2, run, "callbacks=resume")).returncode == 0
    last = run / "checkpoints" / "last.ckpt"
    assert Path(f"{last.resolve()}.sha256").is_file()  # last.ckpt links to the newest
    (run / "metrics.json").unlink()  # an interrupted run (a finished one is never resumed)
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, as a disk or a copy could leave it
    last.write_bytes(bytes(data))
    for ckpt in (str(last), "last"):
        proc = run_cmd(sst2_cmd(sst2, run, "callbacks=resume", f"ckpt_path={ckpt}"))
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "does not match its checksum" in last_line(proc)
    assert not (run / "metrics.json").exists()  # nothing written


@pytest.mark.trust
@pytest.mark.slow
def test_a_finished_job_is_not_overwritten_by_other_settings(sst2, tmp_path):
    run = tmp_path / "run"
    assert run_cmd(sst2_cmd(sst2, run)).returncode == 0
    before = (run / "metrics.json").read_text()
    other = tmp_path / "copy"
    other.mkdir()
    for f in sst2.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    proc = run_cmd(sst2_cmd(other, run))
    assert proc.returncode != 0 and "data.path" in last_line(proc)
    assert (run / "metrics.json").read_text() == before
    again = run_cmd(sst2_cmd(sst2, run))  # the same settings: skipped, unchanged
    assert again.returncode == 0 and (run / "metrics.json").read_text() == before


@pytest.mark.trust
@pytest.mark.slow
def test_asking_for_a_rerun_replaces_a_finished_result(sst2, tmp_path):
    run = tmp_path / "run"
    assert run_cmd(sst2_cmd(sst2, run)).returncode == 0
    proc = run_cmd(sst2_cmd(sst2, run, "optimizer.lr=1e-3", "skip_completed=false"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert strict_json(run / "metrics.json")["settings"]["optimizer"]["lr"] == 1e-3


@pytest.mark.trust
def test_resuming_from_weights_only_or_another_model_size_is_one_line(probe_folders, tmp_path):
    """K13: resuming with encoder.hidden=64 failed in the state-dict load (a 74-line size-mismatch
    traceback) before the settings guard could name the setting; KN10: ckpt_path=<run>/model.ckpt
    (weights only) failed with KeyError 'Trying to restore optimizer state ...'."""
    from moo_lightning.cli.errors import user_error

    run_dir = tmp_path / "run"
    base = (*TINY, f"data.path={probe_folders['GOOD']}", "trainer.val_check_interval=2")
    train_in(run_dir, *base, "callbacks=resume", "save_model=true")
    model = run_dir / "model.ckpt"
    (run_dir / "metrics.json").unlink()  # an interrupted run: it may be resumed
    for extra, fragment in (
        (("encoder.hidden=64", "ckpt_path=last"), "other settings (encoder.hidden: 32 → 64)"),
        ((f"ckpt_path={model}",), "holds a model's weights only"),
    ):
        with pytest.raises(Exception) as info:
            train_in(run_dir, *base, "callbacks=resume", *extra)
        err = user_error(info.value)
        assert err is not None and fragment in str(err), repr(info.value)
    assert not (run_dir / "metrics.json").exists()  # nothing written


def _edit_in_place(path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` (same length) and put the file's time stamps back, as cp -p,
    rsync -t or a careful editor leave them."""
    import os

    assert len(old) == len(new)
    stat = path.stat()
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


@pytest.mark.trust
def test_a_data_file_edited_in_place_is_read_again_and_is_another_setting(tmp_path):
    """D31: a file edited with its size and time stamp kept was read stale from the datasets
    cache (in later processes too). SN1: a finished job was then skipped as if trained on the
    new rows. The cache is keyed by content, and the files' content is part of the settings."""
    from moo_lightning.cli.errors import user_error

    data = write_glue(tmp_path / "sst2", "sst2")
    base = (*TINY, f"data.path={data}", "trainer.val_check_interval=2", "save_model=false")
    run_dir = tmp_path / "run"
    train_in(run_dir, *base)
    _edit_in_place(data / "train.jsonl", '"label": 0', '"label": 1')
    with pytest.raises(Exception) as info:  # SN1: the same command, the same folder
        train_in(run_dir, *base)
    err = user_error(info.value)
    assert err is not None and "other settings (data_files.train.jsonl:" in str(err), repr(err)
    _edit_in_place(data / "train.jsonl", '"label": 1', '"label": 7')  # D31: read again
    with pytest.raises(Exception) as info:
        train_in(tmp_path / "other", *base)
    err = user_error(info.value)
    assert err is not None and "train.jsonl, row 1: label 7 is not 0..1" in str(err), repr(err)
