"""Sweep workflow: resumable multiruns, W&B offline runs, launchers, sweep configs."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, wandb_records, write_glue


def _train(args, tmp_path, env=None, timeout=900):
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    return write_glue(tmp_path_factory.mktemp("sweep") / "sst2", "sst2")


def _quick_sweep(sst2, sweep_dir, *extra: str) -> list[str]:
    """Arguments of a two-seed sweep of one-batch jobs on the tiny model."""
    return [
        "-m",
        *extra,
        "task=sst2",
        "encoder=tiny",
        f"data.path={sst2}",
        "++trainer.fast_dev_run=true",
        "logger=none",
        "seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
    ]


def test_rerunning_a_sweep_skips_complete_jobs(sst2, tmp_path):
    args = _quick_sweep(sst2, tmp_path)
    first = _train(args, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    paths = sorted(tmp_path.glob("*/metrics.json"))
    assert len(paths) == 2
    stamp = [p.stat().st_mtime_ns for p in paths]
    paths[1].unlink()  # as if the second job had been killed
    again = _train(args, tmp_path)
    assert again.returncode == 0
    assert "already holds this job's result" in again.stdout + again.stderr
    assert paths[0].stat().st_mtime_ns == stamp[0]  # untouched
    assert paths[1].exists()  # re-run


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_wandb_offline_run_holds_summary_and_diagnostics(sst2, tmp_path):
    pytest.importorskip("wandb")
    env = dict(
        os.environ,
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DATA_DIR=str(tmp_path / "wandb_data"),  # tables are staged there
        WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"),
    )
    proc = _train(
        [
            "task=sst2",
            "encoder=tiny",
            f"data.path={sst2}",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            "logger=wandb",
            "combiner=epo",
            f"hydra.run.dir={tmp_path}",
        ],
        tmp_path,
        env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (log,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    summary, history, config, run = {}, set(), set(), None
    for rec in wandb_records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "summary":
            summary.update(
                {u.key or "/".join(u.nested_key): u.value_json for u in rec.summary.update}
            )
        elif kind == "history":
            history |= {i.key or "/".join(i.nested_key) for i in rec.history.item}
        elif kind == "config":
            config |= {u.key for u in rec.config.update}
        elif kind == "run":
            run = rec.run
    for key in ("val/acc_best", "test/acc"):
        assert key in summary, key
    for key in (
        "train/combiner/mu",
        "train/combiner/balance_mode",
        "train/weight_0",
        "train/loss_1",
    ):
        assert key in history, key
    assert {"combiner", "module", "seed"} <= config  # the objective: module.objective
    # the group: every label but the combiner and the seed; the job type: the task
    assert run.run_group == "sst2 N20 tiny moo r0.1,0.9 tau0.3 lam0.3 lr1e-05"
    assert run.display_name == "sst2 N20 tiny moo epo r0.1,0.9 tau0.3 lam0.3 lr1e-05 seed0"
    assert run.job_type == "sst2"
    assert {"combiner=epo", "objective=moo", "encoder=tiny", "seed=0"} <= set(run.tags)
    assert "WANDB_API_KEY" not in log.read_bytes().decode("latin-1")


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_two_seed_sweep_and_report_reads_it(sst2, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = _train(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "task=sst2",
            "encoder=tiny",
            f"data.path={sst2}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "logger=none",
            "seed=0,1",
            f"hydra.sweep.dir={sweep}",
            "hydra.launcher.timeout_min=10",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    rep = subprocess.run(
        [sys.executable, "sweep/report.py", str(sweep), "--out", str(tmp_path / "report")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert rep.returncode == 0, rep.stderr
    assert "(n=2" in (tmp_path / "report" / "table.md").read_text()


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(sst2, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = _train(
        _quick_sweep(sst2, tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(tmp_path.glob("*/metrics.json"))) == 2


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_optuna_search_maximises_the_returned_validation_metric(sst2, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    import json

    import yaml

    args = [
        "-m",
        "hparams_search=glue_optuna",
        "task=sst2",
        "encoder=tiny",
        f"data.path={sst2}",
        "logger=none",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.enable_progress_bar=false",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = _train(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = [json.loads(p.read_text()) for p in tmp_path.glob("*/metrics.json")]
    assert len(trials) == 3 and all(t["status"] == "ok" for t in trials)
    # every trial its own sampled values (and folder); the study kept the best validation
    lrs = {t["settings"]["optimizer"]["lr"] for t in trials}
    assert len(lrs) == 3 and all(1e-6 <= lr <= 1e-4 for lr in lrs)
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(t["val/acc_best"] for t in trials))
    assert set(best["best_params"]) == {
        "optimizer.lr", "module.objective.temperature", "module.objective.lam", "preference"
    }  # fmt: skip
    assert "setup plugin alembic" not in proc.stdout + proc.stderr


def test_a_search_refuses_to_optimise_a_test_metric(sst2, tmp_path):
    """hparams_search with optimized_metric=test/acc stops in one line before any trial trains."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = [
        "-m", "hparams_search=glue_optuna", "optimized_metric=test/acc", "task=sst2",
        "encoder=tiny", f"data.path={sst2}", "logger=none", "trainer.max_steps=2",
        "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}",
    ]  # fmt: skip
    proc = _train(args, tmp_path)
    assert proc.returncode != 0
    assert "optimized_metric='test/acc': a search may optimise a validation or training metric" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*/metrics.json"))
