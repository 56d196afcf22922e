"""Nothing executed, nothing fake, nothing lost: checkpoints are read as data only, runs without
a result say so, finished jobs are never overwritten by other settings, and concurrent copies of
a sweep train every job once."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, write_glue


def _tiny(glue):
    return [
        "task=sst2",
        "encoder=tiny",
        f"data.path={glue}",
        "logger=none",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.enable_progress_bar=false",
    ]


def _cmd(glue, run_dir, *extra):
    return [sys.executable, "train.py", *_tiny(glue), f"hydra.run.dir={run_dir}", *extra]


def _run(cmd):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _last_line(proc) -> str:
    return proc.stderr.strip().splitlines()[-1]


def _strict(path):
    def refuse(token):
        raise ValueError(f"non-strict JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def glue(tmp_path_factory):
    return write_glue(tmp_path_factory.mktemp("glue") / "sst2", "sst2")


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_checkpoint_runs_no_code(glue, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload(marker)}, ckpt)
    proc = _run(_cmd(glue, tmp_path / "run", f"ckpt_path={ckpt}"))
    assert proc.returncode != 0
    assert not marker.exists()  # the payload never ran
    assert "Traceback" not in proc.stderr and "weights" in _last_line(proc).lower()


def test_remote_checkpoints_are_refused_without_touching_the_network(glue, tmp_path):
    proc = _run(_cmd(glue, tmp_path / "run", "ckpt_path=http://127.0.0.1:9/x.ckpt"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "remote checkpoints are not loaded" in _last_line(proc)


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_resuming_with_another_combiner_is_refused(glue, tmp_path):
    run = tmp_path / "run"
    assert _run(_cmd(glue, run, "callbacks=resume", "combiner=epo")).returncode == 0
    (run / "metrics.json").unlink()  # an interrupted run (a finished one is never resumed)
    proc = _run(_cmd(glue, run, "callbacks=resume", "combiner=ls", "ckpt_path=last"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    line = _last_line(proc)
    assert "other settings" in line and "combiner._target_" in line
    assert not (run / "metrics.json").exists()  # nothing written


def test_a_changed_checkpoint_is_refused_by_its_checksum(glue, tmp_path):
    run = tmp_path / "run"
    assert _run(_cmd(glue, run, "callbacks=resume")).returncode == 0
    last = run / "checkpoints" / "last.ckpt"
    assert Path(f"{last.resolve()}.sha256").is_file()  # last.ckpt links to the newest
    (run / "metrics.json").unlink()  # an interrupted run (a finished one is never resumed)
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, as a disk or a copy could leave it
    last.write_bytes(bytes(data))
    for ckpt in (str(last), "last"):
        proc = _run(_cmd(glue, run, "callbacks=resume", f"ckpt_path={ckpt}"))
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "does not match its checksum" in _last_line(proc)
    assert not (run / "metrics.json").exists()  # nothing written


@pytest.mark.slow
def test_a_finished_job_is_not_overwritten_by_other_settings(glue, tmp_path):
    run = tmp_path / "run"
    assert _run(_cmd(glue, run)).returncode == 0
    before = (run / "metrics.json").read_text()
    other = tmp_path / "copy"
    other.mkdir()
    for f in glue.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    proc = _run(_cmd(other, run))
    assert proc.returncode != 0 and "data.path" in _last_line(proc)
    assert (run / "metrics.json").read_text() == before
    again = _run(_cmd(glue, run))  # the same settings: skipped, unchanged
    assert again.returncode == 0 and (run / "metrics.json").read_text() == before


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        (("optimizer.lr=1e10",), "diverged"),
        pytest.param(("trainer.max_steps=0",), "no_steps", marks=pytest.mark.slow),
        pytest.param(("trainer.val_check_interval=8",), "no_validation", marks=pytest.mark.slow),
    ],
)
def test_runs_without_a_result_are_recorded_as_such(glue, tmp_path, extra, status):
    proc = _run(_cmd(glue, tmp_path / "run", *extra))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"1 {status}" in _last_line(proc)
    m = _strict(tmp_path / "run" / "metrics.json")
    assert m["status"] == status and m["status_reason"]
    assert "test/acc" not in m and "val/acc_best" not in m


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_two_copies_of_a_sweep_train_every_job_once(glue, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "train.py", "-m", *_tiny(glue), "seed=0,1,2,3"]
    cmd.append(f"hydra.sweep.dir={sweep}")
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    logs = "".join(o + e for o, e in outs)
    assert logs.count("== ok: ") == 4, logs[-3000:]  # every job trained exactly once
    assert set(codes) <= {0, 75}, logs[-3000:]  # 75: skipped folders the other copy was writing
    found = sorted(sweep.glob("*/metrics.json"))
    assert len(found) == 4 and all(_strict(p)["status"] == "ok" for p in found)
    assert not list(sweep.rglob("*.tmp"))
    for code, (out, err) in zip(codes, outs):
        assert (code == 75) == ("being written by" in out + err)


@pytest.mark.slow
def test_asking_for_a_rerun_replaces_a_finished_result(glue, tmp_path):
    run = tmp_path / "run"
    assert _run(_cmd(glue, run)).returncode == 0
    proc = _run(_cmd(glue, run, "optimizer.lr=1e-3", "skip_completed=false"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _strict(run / "metrics.json")["settings"]["optimizer"]["lr"] == 1e-3
