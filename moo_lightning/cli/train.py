"""Train one model (or one ensemble) with a gradient combiner; the Hydra entry point.

python train.py task=toy combiner=epo preference=[0.2,0.8]
python train.py task=qnli combiner=epo -m seed=0-9
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

_PROCESS_START = time.perf_counter()

import hydra  # noqa: E402  (after _PROCESS_START, to time the imports)
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from moo_lightning.cli.argv import (  # noqa: E402
    fit_folder_name,
    normalise_argv,
    refuse_duplicate_sweeps,
)
from moo_lightning.cli.checks import (  # noqa: E402
    check_run_settings,
    check_unknown_keys,
    resume_file,
)
from moo_lightning.launch import is_leader, join_submitit_tasks  # noqa: E402
from moo_lightning.records import (  # noqa: E402
    ChecksummedCheckpointIO,
    FolderBusyError,
    FolderLock,
    RunFolderUnwritable,
    SettingsGuard,
    check_checkpoint,
    check_resume_point,
    data_fingerprint,
    describe_differences,
    file_sha256,
    read_json,
    run_status,
    scalar,
    settings_differences,
    summary_block,
    write_record,
)

log = logging.getLogger("moo_lightning")
# jobs of this process that ended without a result (a status other than "ok", or a folder another
# process was writing): the process's exit code says so after a sweep
_OUTCOMES: list[str] = []
# jobs this process has run (the first one's timing includes the imports and Hydra's set-up)
_JOBS: list[Path] = []


# the model a finished run leaves in its folder (save_model=true)
MODEL_FILE = "model.ckpt"


class BadSetting(ValueError):
    """A setting, file or data problem found while building a job: reported in one line."""


@dataclass
class Job:
    """Everything one run is built from, and when each part was ready."""

    cfg: DictConfig
    run_dir: Path
    settings: dict
    encoder: object
    data: object
    combiner: object
    module: object
    trainer: object
    loggers: list
    timing: dict = field(default_factory=dict)


def run(cfg: DictConfig) -> float | None:
    """One job: check the run folder (lock; a finished job with the same settings is skipped),
    build, fit and test, record. Returns the optimised metric for Hydra's sweepers."""
    start = time.perf_counter()
    check_optimized_metric(cfg.get("optimized_metric"))
    try:
        check_run_settings(cfg)
        check_unknown_keys(cfg)
    except ValueError as err:
        raise BadSetting(str(err)) from None
    join_submitit_tasks()
    run_dir = Path(cfg.paths.run_dir)
    settings = _settings(cfg)
    # every DDP rank takes the same skip / refuse decision from the same files (a rank that
    # went on alone would wait for the others forever); rank 0 also holds the folder's lock
    lock = FolderLock(run_dir) if is_leader() else contextlib.nullcontext()
    try:
        with lock:
            done = _finished_result(cfg, run_dir, settings)
            if done is not None:
                return _skip(cfg, run_dir, done)
            job = build(cfg, run_dir, settings, start)
            metrics = fit_and_test(job)
            return record(job, metrics, start)
    except FolderBusyError as err:
        if not _is_multirun():
            raise
        log.warning("skipping this job: %s", err)
        _OUTCOMES.append("busy")
        return None


def check_optimized_metric(key) -> None:
    """A search maximises a validation or training metric, never a test metric: choosing
    settings by test results would make every reported test number optimistic."""
    if key is None:
        return
    if not isinstance(key, str) or not key.startswith(("val/", "train/")):
        raise BadSetting(
            f"optimized_metric={key!r}: a search may optimise a validation or training metric "
            "(val/..., train/...; e.g. val/acc_best), never a test metric"
        )


def _finished_result(cfg: DictConfig, run_dir: Path, settings: dict) -> dict | None:
    """The folder's finished result when this job may be skipped; None when it must run.
    A finished result made with other settings is refused (never overwritten) unless
    ``skip_completed=false`` asks for a re-run."""
    done = read_json(run_dir / "metrics.json")
    if done and done.get("complete") and cfg.get("ckpt_path") is not None:
        # resuming a finished run would train nothing and rewrite its record without what the
        # interrupted parts of a fit hold (the validation history, the final training losses)
        raise BadSetting(
            f"ckpt_path={cfg.ckpt_path}: {run_dir} holds a finished run (status "
            f"{done.get('status', 'ok')}); there is nothing to resume, and its metrics.json is "
            "left as it is. Resume only an interrupted run (one without metrics.json)"
        )
    finished = done and done.get("complete")
    if not (finished and cfg.get("skip_completed")):
        return None
    if "settings" not in done:
        raise BadSetting(
            f"{run_dir} holds a finished job from an earlier version that recorded no settings, "
            "so it cannot be checked against this command; it is left as it is. Use another "
            "folder (hydra.run.dir / hydra.sweep.dir)"
        )
    diff = settings_differences(done["settings"], settings)
    if diff:
        raise BadSetting(
            f"{run_dir} holds a finished job made with other settings "
            f"({describe_differences(diff)}); its metrics.json, which records those settings, is "
            "left as it is. Use another folder (hydra.run.dir / hydra.sweep.dir) for these "
            "settings"
        )
    return done


def _skip(cfg: DictConfig, run_dir: Path, done: dict) -> float | None:
    # re-running a sweep completes only the jobs without a finished result
    status = done.get("status", "ok")
    log.info("%s already holds this job's result (%s): skipping it", run_dir, status)
    if status != "ok":
        _OUTCOMES.append(status)
    key = cfg.get("optimized_metric")
    return done.get(key) if key else None


def build(cfg: DictConfig, run_dir: Path, settings: dict, start: float) -> Job:
    """Every part of the run from the config, in order (encoder, data, combiner, optimizer,
    module, callbacks, loggers, trainer). A ValueError or FileNotFoundError raised here is a
    setting, a file or the data the user gave: it becomes one line (BadSetting). Other errors
    (a bug, an import error) keep their traceback."""
    try:
        return _build(cfg, run_dir, settings, start)
    except Exception as err:
        cause = _user_error(err, building=True)
        if cause is None:
            raise
        raise BadSetting(str(cause)) from err


def _build(cfg: DictConfig, run_dir: Path, settings: dict, start: float) -> Job:
    import lightning as L
    import torch

    from moo_lightning.module import ConfigError, InformsData, InformsModule

    check_checkpoint(cfg.get("ckpt_path"))
    _saves_model(cfg)  # a wrong value fails before training, not after
    if cfg.get("ckpt_path") == "last":
        _check_last_checkpoint(cfg, run_dir)
    check_resume_point(resume_file(cfg), settings)  # before Lightning loads any weights
    if cfg.seed is not None:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    timing = {}
    # text tasks share one encoder between the data (its tokenizer) and the module
    encoder = hydra.utils.instantiate(cfg.encoder) if cfg.get("encoder") else None
    timing["encoder"] = time.perf_counter() - start
    data_kwargs = encoder.data_arguments() if isinstance(encoder, InformsData) else {}
    data = hydra.utils.instantiate(cfg.data, **data_kwargs)
    data_start = time.perf_counter()
    if isinstance(data, L.LightningDataModule):
        # read, sample and tokenise now (fit would do it too): a job's fixed cost is then timed
        # apart from training, and bad data fails before the trainer exists. Every DDP rank
        # runs this; the data are small (few-shot) or cached.
        data.setup("fit")
    timing["data"] = time.perf_counter() - data_start
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision.startswith("16"):
        # checked here as well as in the module: on CPU Lightning silently turns 16-mixed into
        # bf16-mixed, so the module would never see what was asked for
        raise ValueError(
            f"trainer.precision={precision} is not supported: the Gram combiners write .grad by "
            "hand, bypassing the loss scaler, and the module skips non-finite steps itself, "
            "which a loss scaler expects to do. Use 32-true or bf16-mixed"
        )
    combiner = hydra.utils.instantiate(cfg.combiner)
    optimizer = hydra.utils.instantiate(cfg.optimizer)
    try:  # the optimizer checks its settings (lr, betas, ...) only once built: build one now
        optimizer([torch.nn.Parameter(torch.zeros(1))])
    except ValueError as err:
        raise ValueError(f"optimizer: {err}") from None
    module_kwargs = {}
    for part in (encoder, data):
        if isinstance(part, InformsModule):
            module_kwargs.update(part.module_arguments())
    preference = cfg.preference
    module = hydra.utils.instantiate(
        cfg.module,
        combiner=combiner,
        preference=OmegaConf.to_object(preference)
        if OmegaConf.is_config(preference)
        else preference,
        optimizer=optimizer,
        scheduler=hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        **module_kwargs,
    )
    # checkpoints carry the settings that made them; resuming with others is refused
    callbacks = [*_instantiate_all(cfg, "callbacks"), SettingsGuard(settings, ConfigError)]
    callbacks += _progress_bar(cfg, callbacks)
    # the W&B label r: the preference as typed (0.2 or [0.1,0.9]) when the run follows one
    followed = module.recorded_preference is not None
    loggers = _instantiate_all(cfg, "logger", preference=preference if followed else None)
    if cfg.get("ckpt_path") is not None:
        loggers = [_continue_log(lg, cfg) for lg in loggers]
    # checkpoints are written with a SHA-256 beside them and checked before they are read,
    # unless the config brings a checkpoint writer of its own (its other plugins are kept)
    from lightning.fabric.plugins import CheckpointIO

    plugins = [hydra.utils.instantiate(p) for p in (cfg.trainer.get("plugins") or [])]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(ChecksummedCheckpointIO())
    trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins
    )
    timing["setup"] = time.perf_counter() - start  # everything before fit: a job's fixed cost
    return Job(cfg, run_dir, settings, encoder, data, combiner, module, trainer, loggers, timing)


def _continue_log(logger, cfg: DictConfig):
    """A resumed run's CSV log goes to a new version folder (``csv/resume1/metrics.csv``, ...):
    Lightning's CSV logger would otherwise delete the log of the steps before the interruption.
    The record lists every part (``logs``)."""
    from lightning.pytorch.loggers import CSVLogger

    if not isinstance(logger, CSVLogger):
        return logger
    root = Path(logger.root_dir)
    k = 1
    while (root / f"resume{k}").exists():
        k += 1
    cfg_csv = next(
        c
        for c in cfg.logger.values()
        if c is not None and c.get("_target_", "").endswith("CSVLogger")
    )
    return hydra.utils.instantiate(cfg_csv, version=f"resume{k}")


def _saves_model(cfg: DictConfig) -> bool:
    """save_model: true, false, or auto (the default): a single run keeps its tested model, the
    jobs of a sweep (-m) keep none (91 MB per MiniLM job, ~500 MB per RoBERTa-base job)."""
    value = cfg.get("save_model", "auto")
    if value == "auto":
        return not _is_multirun()
    if not isinstance(value, bool):
        raise ValueError(f"save_model must be true, false or auto. Found {value!r}")
    return value


def _early_stop(trainer) -> dict | None:
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


def _has_active_dropout(module) -> bool:
    """Layers whose training output depends on the rank's share of the batch or its own random
    draws: dropout with p > 0, and batch normalisation (per-rank batch statistics)."""
    import torch

    return any(
        (isinstance(m, torch.nn.Dropout) and m.p > 0)
        or isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        for m in module.modules()
    )


def _check_last_checkpoint(cfg: DictConfig, run_dir: Path) -> None:
    """``ckpt_path=last`` needs a checkpoint to resume from: Lightning would otherwise train
    from scratch with only a warning, and the run would look resumed."""
    folders = [
        Path(c.dirpath)
        for c in (cfg.get("callbacks") or {}).values()
        if c is not None
        and str(c.get("_target_", "")).endswith("ModelCheckpoint")
        and c.get("dirpath")
    ]
    if not folders:
        raise ValueError(
            "ckpt_path=last resumes from the run's checkpoints, but this run writes none: add "
            "callbacks=resume (the checkpoints of the interrupted run must be in its folder)"
        )
    if not any(f.is_dir() and any(f.glob("*.ckpt")) for f in folders):
        raise FileNotFoundError(
            f"ckpt_path=last: no checkpoint in {', '.join(map(str, folders))} to resume from "
            f"(nothing of an interrupted run in {run_dir}; run without ckpt_path to start)"
        )


def _progress_bar(cfg: DictConfig, callbacks: list) -> list:
    """Lightning's default bar (rich, when rich is installed) as the step-budget bar, which
    reads the optimizer steps on runs budgeted in steps and is Lightning's own bar on the others,
    when the console shows a bar and the config brings none."""
    from lightning.pytorch.callbacks import ProgressBar
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    wanted = cfg.trainer.get("enable_progress_bar", True) and not cfg.trainer.get("fast_dev_run")
    if not (wanted and _RICH_AVAILABLE):
        return []
    if any(isinstance(c, ProgressBar) for c in callbacks):
        return []
    from moo_lightning.progress import StepBudgetProgressBar

    return [StepBudgetProgressBar()]


def fit_and_test(job: Job) -> dict:
    """Fit; the run's status (ok, diverged, no_steps, no_validation); the best-by-validation
    weights tested when the run has a result. Errors here keep their traceback unless they say
    they are bad settings."""
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
    stopped = None
    try:
        # weights_only: a checkpoint is read as tensors and plain containers, never as code
        trainer.fit(module, datamodule=data, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except NonFiniteError as err:  # recorded as the run's status, not a crash
        stopped = str(err)
    job.timing["fit"] = time.perf_counter() - fit_start
    status, why = ("diverged", stopped) if stopped else run_status(module, trainer)
    early = _early_stop(trainer)
    metrics: dict = {
        "task": cfg.task_name,
        "status": status,
        "choices": _choices(cfg),
        "num_train": cfg.data.get("num_train"),
        "combiner": job.combiner.name,  # the one that ran (single-objective losses: ls)
        "seed": cfg.seed,
        # the one preference every model followed (the module's rule, also the W&B label r):
        # none for a combiner that ignores it or an ensemble whose members have their own
        "preference": module.recorded_preference,
        "steps": trainer.global_step,
        "combiner_fallbacks": module.fallbacks,
        "combiner_recoveries": module.recoveries,
        "skipped_steps": module.skipped_steps,
        # why the run ended before its budget (early stopping), with the step and the value
        "stopped_early": early,
        "world_size": trainer.world_size,
        "precision": str(trainer.precision),
    }
    if trainer.world_size > 1:
        # ranks draw their own dropout masks: with dropout on, the steps differ from one
        # process's on the same global batches (equal with encoder.dropout=0 module.dropout=0)
        metrics["ddp_equals_one_process"] = not _has_active_dropout(module)
    test_start = time.perf_counter()
    if status == "ok":
        metrics.update(
            {k: scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        )
        # a resumed run whose fit had nothing left to do logged no validation this time: the
        # module's restored history says what it was (never overwriting a fresh value)
        for key, value in module.validation_record().items():
            metrics.setdefault(key, value)
        if cfg.get("test"):
            # the module restores its best-validation weights itself (memory and checkpoints)
            results = trainer.test(module, datamodule=data, verbose=False)
            metrics.update({k: scalar(v) for k, v in (results[0] if results else {}).items()})
    else:
        # no headline accuracy: a diverged or unvalidated run must not enter a table
        metrics["status_reason"] = why
        log.error("run %s: %s (recorded in metrics.json)", status, why)
    job.timing["test"] = time.perf_counter() - test_start
    if status == "ok" and _saves_model(cfg) and not trainer.fast_dev_run:
        # the weights that were tested (the best-by-validation ones), no optimizer state, with
        # a SHA-256 beside them: `moo-evaluate <run dir>` tests them again later. Every DDP rank
        # takes part; rank 0 writes
        try:
            trainer.save_checkpoint(job.run_dir / MODEL_FILE, weights_only=True)
        except RunFolderUnwritable as err:  # the result is still recorded (write_record)
            log.error("the model was not saved: %s", err)
        else:
            metrics["model"] = MODEL_FILE
            if trainer.is_global_zero:
                metrics["model_bytes"] = (job.run_dir / MODEL_FILE).stat().st_size
                metrics["model_sha256"] = file_sha256(job.run_dir / MODEL_FILE)  # moo-evaluate
    return metrics


def record(job: Job, metrics: dict, start: float) -> float | None:
    """The module's exports, timings, settings and status into metrics.json (rank 0, written
    last and atomically), the loggers' summaries, and the end-of-run block on the console."""
    if not job.trainer.is_global_zero:
        # DDP: every rank trained and evaluated (metrics are synchronised); one writes
        return None
    metrics.update(job.module.export(job.run_dir))
    _JOBS.append(job.run_dir)
    # the CSV log, in parts when the run was resumed (csv/metrics.csv, csv/resume1/metrics.csv)
    csv_logs = sorted(job.run_dir.glob("csv/**/metrics.csv"), key=lambda p: (len(p.parts), p))
    metrics["logs"] = [str(p.relative_to(job.run_dir)) for p in csv_logs]
    metrics["timing_s"] = {
        **job.timing,
        # imports and Hydra's set-up before the first job of a process; 0 for later jobs
        "process_before_run": start - _PROCESS_START if len(_JOBS) == 1 else 0.0,
    }
    metrics["cache_hits"] = {
        "encoder": bool(getattr(job.encoder, "cache_hit", False)),
        "data": bool(getattr(job.data, "cache_hit", False)),
    }
    metrics["wall_time_s"] = time.perf_counter() - start
    metrics["settings"] = job.settings  # what produced this result, compared before any skip
    metrics["complete"] = True  # the job finished; `status` says whether it has a result
    for lg in job.loggers:
        _finish_logger(lg, metrics)
    # written last and atomically: an interrupted job leaves no metrics.json behind
    write_record(job.run_dir, metrics)  # elsewhere (named) when the folder is not writable
    log.info(summary_block(job.run_dir, metrics))
    if metrics["status"] != "ok":
        _OUTCOMES.append(metrics["status"])
        return None
    key = job.cfg.get("optimized_metric")
    return metrics.get(key) if key else None


_UNSET = object()


def _instantiate_all(cfg: DictConfig, section: str, preference=_UNSET) -> list:
    """Every object of a config section (callbacks, loggers). ``preference``: the W&B logger's
    label ``r``, given when the module records the preference it followed (None: no label)."""
    group = cfg.get(section)
    if not group:
        return []
    built = []
    for c in group.values():
        if c is None:
            continue
        if preference is not _UNSET and c.get("_target_") == "moo_lightning.loggers.wandb_logger":
            built.append(hydra.utils.instantiate(c, labels={"r": preference}))
        else:
            built.append(hydra.utils.instantiate(c))
    return built


# settings that do not change a run's result: left out of the record compared before a finished
# job is skipped or a checkpoint resumed (dotted prefixes)
_NOT_SETTINGS = (
    "hydra",
    "paths",
    "logger",
    # checkpoint writers change no result (early stopping does: it stays a setting)
    "callbacks.last",
    "callbacks.best_checkpoint",
    "ckpt_path",
    "skip_completed",
    "save_model",
    "optimized_metric",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.default_root_dir",
    "trainer.log_every_n_steps",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.num_nodes",
    "trainer.use_distributed_sampler",
    "encoder.cache",
    "data.cache",
    "data.num_workers",
    "data.eval_batch_size",
    "module.save_test_embeddings",
)


def _changes_results(key: str) -> bool:
    """Whether the dotted setting ``key`` can change a run's result (it is not, and is not
    inside, one of _NOT_SETTINGS)."""
    return not any(key == k or key.startswith(k + ".") for k in _NOT_SETTINGS)


def job_folder(overrides) -> str:
    """A sweep job's folder name (hydra.sweep.subdir): its command-line overrides that change
    results, sorted and joined by ',' (Hydra's override_dirname, so plain names are the same as
    Hydra's). Keys that change no result (logger, paths, devices, ...: _NOT_SETTINGS) are left
    out. A local path (data.path, encoder.name: absolute, relative with a leading '.', or an
    existing file or folder) is named by its last part and a short hash of its absolute path,
    so two copies of the data never share a folder; any other '/' (a group such as
    combiner/criterion, a hub id) is replaced, so a name never nests folders."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = []
    for line in map(str, overrides):
        prefix = line[: len(line) - len(line.lstrip("+~"))]
        try:
            (override,) = parser.parse_overrides([line])
            key, value = override.key_or_group, override.value()
        except Exception:  # Hydra parsed the line once already; name it as typed
            key, value = line[len(prefix) :].partition("=")[0], None
        name = key.replace("/", ".")
        if not _changes_results(name):
            continue
        if isinstance(value, str) and _local_path(value):
            where = os.path.abspath(os.path.expanduser(value))
            digest = hashlib.sha256(where.encode()).hexdigest()[:6]
            line = f"{prefix}{name}={Path(where).name or 'root'}~{digest}"
        elif "/" in line:
            rest = line[len(prefix) + len(key) :]  # '=value' as typed
            line = f"{prefix}{name}{rest.replace('/', '--')}"
        lines.append(line)
    return fit_folder_name(",".join(sorted(lines)))  # a long name: cut, with a hash of it


def _local_path(value: str) -> bool:
    return os.path.isabs(value) or value.startswith((".", "~")) or os.path.exists(value)


# hydra.sweep.subdir: ${job_folder:${hydra.overrides.task}} (registered when this module loads,
# before Hydra names any folder; joblib and submitit workers import it to unpickle the job)
OmegaConf.register_new_resolver("job_folder", job_folder, replace=True)


def few_shot_budget(num_train, budgets) -> int:
    """The step budget of a few-shot N from the task's ``budget`` table {N: steps}: the entry of
    the smallest N at or above ``num_train`` (the largest entry beyond the table; the whole
    training set, null, takes it too). trainer.max_steps: ${few_shot_budget:...} in
    task/_glue.yaml; the table comes from the validation-only budget checks (sweep/README.md)."""
    table = sorted((int(n), int(steps)) for n, steps in budgets.items())
    if num_train is None:
        return table[-1][1]
    for n, steps in table:
        if int(num_train) <= n:
            return steps
    return table[-1][1]


# trainer.max_steps: ${few_shot_budget:${data.num_train},${budget}} (GLUE tasks)
OmegaConf.register_new_resolver("few_shot_budget", few_shot_budget, replace=True)


def _settings(cfg: DictConfig) -> dict:
    """The resolved settings that define this run's result (plain containers)."""
    top = [k for k in cfg if _changes_results(k)]  # hydra's own node is never resolved
    full = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in top
    }

    def keep(tree, prefix=""):
        if not isinstance(tree, dict):
            return tree
        return {
            k: keep(v, f"{prefix}{k}.") for k, v in tree.items() if _changes_results(f"{prefix}{k}")
        }

    settings = keep(full)
    data = settings.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        data["path"] = os.path.abspath(data["path"])  # the same folder however it was named
        settings["data_files"] = data_fingerprint(data["path"])  # what the files held
    return settings


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _choices(cfg: DictConfig) -> dict:
    """The config-group options this run was composed from (task, encoder, objective, ...),
    without the groups its task switched off (the toy task has no encoder or objective)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return {
        k: v
        for k, v in HydraConfig.get().runtime.choices.items()
        if not k.startswith("hydra") and not (k in cfg and cfg[k] is None)
    }


def _finish_logger(lg, metrics: dict) -> None:
    """Put the run's results in the logger's summary (W&B) and close it, so the next job of an
    in-process sweep starts a run of its own."""
    numeric = {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    experiment = getattr(lg, "experiment", None)
    summary = getattr(experiment, "summary", None)
    if summary is not None:
        summary.update(numeric)
        if _is_wandb(lg):
            _wandb_results(lg, metrics, summary)
    lg.finalize("success")
    if hasattr(experiment, "finish"):
        experiment.finish()


# figures a run may leave in its folder: logged to W&B as images under figures/<stem>
_FIGURES = ("trajectory.png", "loss_space.png")


def _is_wandb(lg) -> bool:
    from lightning.pytorch.loggers import WandbLogger

    return isinstance(lg, WandbLogger)


def _numbers(value) -> bool:
    """A non-empty flat list of numbers."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def _wandb_results(lg, metrics: dict, summary) -> None:
    """What metrics.json holds beyond numbers, into the W&B run: texts (status, combiner, ...);
    flat lists of numbers (final losses, preference) as the list and one entry per index
    (``final_train_losses/0``, ``/1``: what a scatter panel plots); lists of rows (per-member
    test losses, preferences, the validation history) as tables ``tables/<key>``; and the
    figures of the run folder (the logger's save_dir) as images ``figures/<name>``."""
    step = metrics.get("steps")
    summary.update({k: v for k, v in metrics.items() if isinstance(v, str)})
    for key, value in metrics.items():
        if _numbers(value):
            summary.update({key: value, **{f"{key}/{i}": v for i, v in enumerate(value)}})
        elif isinstance(value, list) and value and all(_numbers(row) for row in value):
            width = max(len(row) for row in value)
            if key == "val_history" and width == 2:  # (step, value) pairs
                columns, rows = ["step", "value"], value
            else:
                columns = ["row", *(f"{key}/{j}" for j in range(width))]
                rows = [[i, *row, *[None] * (width - len(row))] for i, row in enumerate(value)]
            lg.log_table(key=f"tables/{key}", columns=columns, data=rows, step=step)
    run_dir = Path(lg.save_dir or ".")
    for name in _FIGURES:
        if (run_dir / name).is_file():
            lg.log_image(key=f"figures/{Path(name).stem}", images=[str(run_dir / name)], step=step)


@hydra.main(version_base="1.3", config_path="pkg://moo_lightning.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return run(cfg)
    except Exception as err:
        user_error = _user_error(err)
        if user_error is None:
            _to_log_file(f"failed:\n{traceback.format_exc()}")  # the console gets it from Hydra
            raise
        # bad input or no network: one line naming the key and what is allowed, no traceback
        _to_log_file(f"error: {user_error}")
        sys.exit(f"error: {user_error}")


def _to_log_file(message: str) -> None:
    """Write ``message`` into the job's log file (train.log) only: the console already shows it,
    as one line or as Hydra's traceback, and a failed job's log must not be empty."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _user_error(err: BaseException, building: bool = False) -> BaseException | None:
    """The bad-input or no-network error inside ``err``'s cause chain (Hydra wraps errors raised
    while instantiating), or None for a genuine failure that deserves its traceback. While a
    job is built every ValueError / FileNotFoundError is a setting or a file the user gave;
    once it trains only errors that declare themselves bad settings are."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import OmegaConfBaseException

    from moo_lightning.hub import HubUnreachableError
    from moo_lightning.module import ConfigError

    user: tuple[type[BaseException], ...] = (
        BadSetting,
        ConfigError,
        FolderBusyError,
        HubUnreachableError,
        MisconfigurationException,
        OmegaConfBaseException,
        RunFolderUnwritable,
    )
    if building:
        user += (ValueError, FileNotFoundError)
    while err is not None:
        if isinstance(err, BadSetting):  # the build's own error, as the user's input raised it
            return _user_error(err.__cause__, building=True) or err
        if isinstance(err, user):
            return err
        err = err.__cause__
    return None


def _exit_code() -> int:
    """0 when every job of this process has a result; otherwise one line and a non-zero code
    (1: a run diverged, trained no step or never validated, recorded in its metrics.json;
    75: jobs skipped because another process was writing their folders, re-run to check)."""
    if not _OUTCOMES:
        return 0
    counts = {k: _OUTCOMES.count(k) for k in dict.fromkeys(_OUTCOMES)}
    print(
        "jobs without a result: " + ", ".join(f"{n} {k}" for k, n in counts.items()),
        file=sys.stderr,
    )
    return 75 if set(counts) == {"busy"} else 1


def cli() -> None:
    """``moo-train`` / ``python train.py``: Hydra's command line plus ``seed=A-B`` and ``-m``
    anywhere; the exit code says whether every job has a result."""
    sys.argv = normalise_argv(sys.argv)
    refuse_duplicate_sweeps(sys.argv)
    main()
    sys.exit(_exit_code())


if __name__ == "__main__":
    cli()
