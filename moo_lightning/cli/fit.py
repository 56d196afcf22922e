"""Fit a built job, decide its status, test the best-by-validation weights, and fill the run's
record (moo_lightning.record.RunRecord) with what the run did."""

from __future__ import annotations

import functools
import logging
import subprocess
import time
from pathlib import Path

from omegaconf import OmegaConf

from moo_lightning.cli.build import MODEL_FILE, Job, saves_model
from moo_lightning.cli.naming import choices
from moo_lightning.errors import ConfigError, RunFolderUnwritable, SolverError
from moo_lightning.record import RunRecord, scalar
from moo_lightning.records import file_sha256, run_status

log = logging.getLogger("moo_lightning")


def fit_and_test(job: Job) -> RunRecord:
    """Fit; the run's status (ok, diverged, solver_failed, no_steps, no_validation); the
    best-by-validation weights tested when the run has a result. Errors here keep their traceback
    unless they say they are bad settings."""
    from moo_lightning.module import NonFiniteError

    cfg, trainer, module, data = job.cfg, job.trainer, job.module, job.data
    if job.loggers:
        flat = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
        resolved = OmegaConf.to_container(
            OmegaConf.create(flat | {"paths": {"run_dir": str(job.run_dir)}}), resolve=True
        )
        for lg in job.loggers:
            lg.log_hyperparams(resolved)
    fit_start = time.perf_counter()
    stopped, solver_failed = None, False
    try:
        # weights_only: a checkpoint is read as tensors and plain containers, never as code
        trainer.fit(module, datamodule=data, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except NonFiniteError as err:  # recorded as the run's status, not a crash
        stopped = str(err)
    except SolverError as err:  # combiner.on_failure=raise: recorded as the run's status too
        stopped = (
            f"step {module.global_step}: combiner {job.combiner.name!r}: {err} "
            "(combiner.on_failure=ls takes linear scalarisation for such steps, counted in "
            "combiner_fallbacks)"
        )
        solver_failed = True
    except RuntimeError as err:
        # early stopping (strict) on a metric the task does not log: Lightning's message names
        # the ones it does; the user's setting, one line
        if "conditioned on metric" not in str(err):
            raise
        raise ConfigError(f"callbacks.early_stopping.monitor: {err}") from None
    job.timing["fit"] = time.perf_counter() - fit_start
    if stopped:
        status, why = ("solver_failed" if solver_failed else "diverged"), stopped
    else:
        status, why = run_status(module, trainer)
    record = RunRecord(
        task=cfg.task_name,
        status=status,
        choices=choices(cfg),
        num_train=cfg.data.get("num_train"),
        combiner=job.combiner.name,  # the one that ran (single-objective losses: ls)
        method=cfg.get("method") or module.method_name,  # the label in tables
        seed=cfg.seed,
        # the one preference every model followed (the module's rule, also the W&B label r):
        # none for a combiner that ignores it or an ensemble whose members have their own
        preference=module.recorded_preference,
        steps=trainer.global_step,
        combiner_fallbacks=module.fallbacks,
        combiner_recoveries=module.recoveries,
        skipped_steps=module.skipped_steps,
        # why the run ended before its budget (early stopping), with the step and the value
        stopped_early=early_stop(trainer),
        world_size=trainer.world_size,
        precision=str(trainer.precision),
    )
    if trainer.world_size > 1:
        # ranks draw their own dropout masks: with dropout on, the steps differ from one
        # process's on the same global batches (equal with encoder.dropout=0 module.dropout=0)
        record.ddp_equals_one_process = not has_active_dropout(module)
    test_start = time.perf_counter()
    if status == "ok":
        record.val = {
            k: scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
        }
        # a resumed run whose fit had nothing left to do logged no validation this time: the
        # module's restored history says what it was (never overwriting a fresh value)
        for key, value in module.validation_record().items():
            record.val.setdefault(key, value)
        if cfg.get("test"):
            # the module restores its best-validation weights itself (memory and checkpoints)
            results = trainer.test(module, datamodule=data, verbose=False)
            record.test = {k: scalar(v) for k, v in (results[0] if results else {}).items()}
    else:
        # no headline accuracy: a diverged or unvalidated run must not enter a table
        record.status_reason = why
        log.error("run %s: %s (recorded in metrics.json)", status, why)
    job.timing["test"] = time.perf_counter() - test_start
    if status == "ok" and saves_model(cfg) and not trainer.fast_dev_run:
        # the weights that were tested (the best-by-validation ones), no optimizer state, with
        # a SHA-256 beside them: `moo-evaluate <run dir>` tests them again later. Every DDP rank
        # takes part; rank 0 writes
        try:
            trainer.save_checkpoint(job.run_dir / MODEL_FILE, weights_only=True)
        except RunFolderUnwritable as err:  # the result is still recorded (RunRecord.write)
            log.error("the model was not saved: %s", err)
            # rank 0 raised before the barrier the other ranks wait at inside save_checkpoint
            trainer.strategy.barrier("Trainer.save_checkpoint")
        else:
            record.model = MODEL_FILE
            if trainer.is_global_zero:
                record.model_bytes = (job.run_dir / MODEL_FILE).stat().st_size
                record.model_sha256 = file_sha256(job.run_dir / MODEL_FILE)  # moo-evaluate
    return record


def finish_record(record: RunRecord, job: Job, start: float, before_run: float) -> None:
    """The task's entries, the logs, timings, cache hits and settings: the record is then
    complete. ``before_run``: the process's imports and Hydra's set-up (0 after its first job)."""
    record.add_task_metrics(job.module.export(job.run_dir))
    # the CSV log, in parts when the run was resumed (csv/metrics.csv, csv/resume1/metrics.csv)
    csv_logs = sorted(job.run_dir.glob("csv/**/metrics.csv"), key=log_order)
    record.logs = [str(p.relative_to(job.run_dir)) for p in csv_logs]
    record.timing_s = {**job.timing, "process_before_run": before_run}
    record.cache_hits = {
        "encoder": bool(getattr(job.encoder, "cache_hit", False)),
        "data": bool(getattr(job.data, "cache_hit", False)),
    }
    record.wall_time_s = time.perf_counter() - start
    record.code = code_version()
    record.settings = job.settings  # what produced this result, compared before any skip
    record.complete = True  # the job finished; `status` says whether it has a result


@functools.cache
def code_version() -> dict:
    """The code this process runs: the package's version and, when it runs from a git checkout,
    the commit and whether tracked files have uncommitted changes (``dirty``); commit None
    where there is no checkout or no git. Read once per process, when its first job starts
    (``train.run``), so a commit made while a job trains is not taken for the code that ran."""
    import moo_lightning

    out = {"version": moo_lightning.__version__, "commit": None, "dirty": None}
    root = Path(moo_lightning.__file__).resolve().parent.parent
    if not (root / ".git").exists():  # an installed package, not a checkout
        return out
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
        changes = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain",
             "--untracked-files=no"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return out
    return {**out, "commit": commit, "dirty": bool(changes)}


def early_stop(trainer) -> dict | None:
    """Early stopping's verdict when it ended the run: the step, the monitored metric, its best
    value and Lightning's reason; None when the run used its whole budget."""
    from lightning.pytorch.callbacks import EarlyStopping

    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.stopping_reason.name != "NOT_STOPPED":
            best = cb.best_score
            return {
                "step": int(trainer.global_step),
                "monitor": cb.monitor,
                "best": float(best) if best is not None else None,
                "reason": cb.stopping_reason_message or cb.stopping_reason.name.lower(),
            }
    return None


def has_active_dropout(module) -> bool:
    """Layers whose training output depends on the rank's share of the batch or its own random
    draws: dropout with p > 0, and batch normalisation (per-rank batch statistics)."""
    import torch

    return any(
        (isinstance(m, torch.nn.Dropout) and m.p > 0)
        or isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        for m in module.modules()
    )


def log_order(path: Path) -> tuple:
    """The order a resumed run's CSV logs were written in: csv/metrics.csv first, then
    csv/resume1, csv/resume2, …, csv/resume10 (by number, not by name)."""
    version = path.parent.name
    number = version.removeprefix("resume")
    return (len(path.parts), int(number) if number.isdigit() else -1, str(path))
