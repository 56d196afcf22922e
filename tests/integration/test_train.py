"""train.py itself: the command line it accepts and how it tells bad input from bugs (the
bad-input table is test_bad_input.py)."""

import json
import os

import pytest


def test_argv_normalisation():
    from moo_lightning.cli.argv import normalise_argv

    argv = ["train.py", "task=qnli", "combiner=epo", "-m", "seed=0-9"]
    assert normalise_argv(argv) == [
        "train.py",
        "-m",
        "task=qnli",
        "combiner=epo",
        "seed=range(0,10)",
    ]
    assert normalise_argv(["t", "seed=3"]) == ["t", "seed=3"]
    with pytest.raises(SystemExit, match="add -m"):
        normalise_argv(["t", "seed=0-9"])
    with pytest.raises(SystemExit, match="range end"):
        normalise_argv(["t", "-m", "seed=5-1"])


def test_sweep_folder_names_carry_every_override_that_changes_results(tmp_path):
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from moo_lightning.cli.naming import job_folder

    plain = ["task=qnli", "combiner=epo", "seed=3", "preference=0.2", "+module.max_bad_steps=4"]
    parsed = OverridesParser.create().parse_overrides(plain)
    # without paths, the same names Hydra's override_dirname gives (finished sweeps still match)
    assert job_folder(plain) == get_overrides_dirname(parsed, [], ",", "=")
    # data and encoder paths are part of the name, as <last part>~<hash of the absolute path>
    a, b = tmp_path / "one" / "sst2", tmp_path / "two" / "sst2"
    name_a = job_folder(["task=sst2", f"data.path={a}", f"encoder.name={tmp_path}/enc/"])
    name_b = job_folder(["task=sst2", f"data.path={b}", f"encoder.name={tmp_path}/enc/"])
    assert "/" not in name_a and name_a != name_b
    assert name_a.startswith("data.path=sst2~") and ",encoder.name=enc~" in name_a
    # the same folder however it is written (quoted, relative, trailing slash) names one job
    spaced = tmp_path / "my sst2"
    spaced.mkdir()
    forms = [f"data.path='{spaced}'", f"data.path={spaced}/"]
    forms.append(f"data.path={os.path.relpath(spaced)}")
    assert len({job_folder([f]) for f in forms}) == 1 and "'" not in job_folder(forms[:1])
    # no other '/' nests folders: a config group path, a hub id
    assert job_folder(["combiner/criterion=weighted_distance"]) == (
        "combiner.criterion=weighted_distance"
    )
    assert job_folder(["encoder.name=FacebookAI/roberta-base"]) == (
        "encoder.name=FacebookAI--roberta-base"
    )
    # settings that change no result stay out: loggers, devices, folders, checkpoints, ...
    noise = [
        "logger=wandb",
        "trainer.devices=2",
        "save_model=false",
        "ckpt_path=/x/last.ckpt",
        "data.num_workers=4",
        "hydra/launcher=joblib",
        "trainer.enable_progress_bar=false",
    ]
    assert job_folder(["seed=1", *noise]) == "seed=1"


def test_a_preference_sweep_with_a_combiner_that_ignores_it_is_refused(tmp_path):
    """combiner=mgda (the min-norm point ignores r) swept over preference would run the same
    job twice: refused in one line before any job runs; LS runs it."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    def train(folder, *args):
        cmd = [sys.executable, "train.py", "-m", "task=toy", "logger=none",
               f"hydra.sweep.dir={tmp_path / folder}", *args]  # fmt: skip
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)

    proc = train("refused", "combiner=ls,mgda", "preference=0.2,0.8")
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "combiner mgda ignores the preference" in err[0], proc.stderr
    assert not list(tmp_path.rglob("metrics.json"))
    proc = train("runs", "combiner=mgda", "seed=0,1", "data.steps=5")  # no preference sweep: runs
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("metrics.json")]
    assert len(records) == 2 and all(r["preference"] is None for r in records)


def _glue_run(tmp_path, *extra, multirun=False):
    import subprocess
    import sys

    from tests.helpers import ROOT, write_glue

    data = write_glue(tmp_path / "sst2", "sst2")
    where = (
        f"hydra.sweep.dir={tmp_path / 'sweep'}" if multirun else f"hydra.run.dir={tmp_path / 'run'}"
    )
    cmd = [sys.executable, "train.py", *(["-m"] if multirun else []), "task=sst2", "encoder=tiny",
           f"data.path={data}", "data.num_train=20", "trainer.val_check_interval=2",
           "trainer.enable_progress_bar=false", where, *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_early_stopping_is_recorded_and_said(tmp_path):
    """Before: a run stopped at step 8 of 60 said only '8 steps'."""
    proc = _glue_run(
        tmp_path, "trainer.max_steps=60", "callbacks=early_stopping",
        "callbacks.early_stopping.patience=1", "logger=none", "save_model=false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    early = m["stopped_early"]
    assert early["step"] == m["steps"] < 60 and early["monitor"] == "val/acc_best"
    assert early["best"] == m["val/acc_best"] and "did not improve" in early["reason"]
    assert f"stopped early at step {early['step']}: val/acc_best" in proc.stdout + proc.stderr


def test_a_plain_sweep_keeps_no_model_and_a_single_run_says_how_large_its_is(tmp_path):
    """Before: every job of a plain -m sweep kept model.ckpt (91 MB per MiniLM job)."""
    proc = _glue_run(tmp_path, "trainer.max_steps=2", "logger=none", "seed=0,1", multirun=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = list((tmp_path / "sweep").rglob("metrics.json"))
    assert len(jobs) == 2 and not list((tmp_path / "sweep").rglob("model.ckpt"))
    assert all("model" not in json.loads(p.read_text()) for p in jobs)
    proc = _glue_run(tmp_path, "trainer.max_steps=2", "logger=none")
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    size = (tmp_path / "run" / "model.ckpt").stat().st_size
    assert m["model"] == "model.ckpt" and m["model_bytes"] == size
    assert f"metrics.json, model.ckpt ({size / 1e6:.0f} MB)" in proc.stdout + proc.stderr
    assert m["world_size"] == 1 and "ddp_equals_one_process" not in m
