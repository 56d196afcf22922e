"""Train one model (or one ensemble) with a gradient combiner; the Hydra entry point.

python train.py task=toy combiner=epo preference=[0.2,0.8]
python train.py task=qnli combiner=epo -m seed=0-9
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import zlib
from pathlib import Path

_PROCESS_START = time.perf_counter()

import hydra  # noqa: E402  (after _PROCESS_START, to time the imports)
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from moo_lightning.records import (  # noqa: E402
    FolderBusyError,
    FolderLock,
    SettingsGuard,
    describe_differences,
    read_json,
    run_status,
    settings_differences,
    write_json_atomic,
)

log = logging.getLogger("moo_lightning")
# per process: jobs run so far, and whether the current job has reached trainer.fit (from then
# on only errors that say they are bad settings are shortened to one line; others keep their
# traceback)
_STAGE = {"runs": 0, "training": False}
# jobs of this process that ended without a result (a status other than "ok", or a folder another
# process was writing): the process's exit code says so after a sweep
_OUTCOMES: list[str] = []


def _instantiate_all(cfg: DictConfig, section: str) -> list:
    group = cfg.get(section)
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if c is not None]


def run(cfg: DictConfig) -> float | None:
    """One job: check the run folder (lock, finished job with the same settings), build data,
    combiner, module, callbacks, loggers and trainer; fit; record the run's status; test the
    best-by-validation weights when the run has a result; write metrics.json."""
    start = time.perf_counter()
    _STAGE["training"] = False
    _join_submitit_tasks()
    run_dir = Path(cfg.paths.run_dir)
    settings = _settings(cfg)
    _check_ckpt_path(cfg.get("ckpt_path"))
    # every DDP rank takes the same skip / refuse decision from the same files (a rank that
    # went on alone would wait for the others forever); rank 0 also holds the folder's lock
    lock = FolderLock(run_dir) if _is_leader() else contextlib.nullcontext()
    try:
        with lock:
            done = read_json(run_dir / "metrics.json")
            # skip_completed=false asks for a re-run: the folder's result is then replaced
            finished = done and done.get("complete") and cfg.get("ckpt_path") is None
            if finished and cfg.get("skip_completed"):
                if "settings" not in done:
                    raise ValueError(
                        f"{run_dir} holds a finished job from an earlier version that recorded "
                        "no settings, so it cannot be checked against this command; it is left "
                        "as it is. Use another folder (hydra.run.dir / hydra.sweep.dir)"
                    )
                diff = settings_differences(done["settings"], settings)
                if diff:
                    raise ValueError(
                        f"{run_dir} holds a finished job made with other settings "
                        f"({describe_differences(diff)}); its metrics.json, which records those "
                        "settings, is left as it is. Use another folder (hydra.run.dir / "
                        "hydra.sweep.dir) for these settings"
                    )
                # re-running a sweep completes only the jobs without a finished result
                status = done.get("status", "ok")
                log.info("%s already holds this job's result (%s): skipping it", run_dir, status)
                if status != "ok":
                    _OUTCOMES.append(status)
                key = cfg.get("optimized_metric")
                return done.get(key) if key else None
            return _train(cfg, run_dir, settings, start)
    except FolderBusyError as err:
        if not _is_multirun():
            raise
        log.warning("skipping this job: %s", err)
        _OUTCOMES.append("busy")
        return None


def _train(cfg: DictConfig, run_dir: Path, settings: dict, start: float) -> float | None:
    import lightning as L

    from moo_lightning.module import ConfigError, NonFiniteError

    if cfg.seed is not None:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)

    preference = (
        OmegaConf.to_object(cfg.preference)
        if OmegaConf.is_config(cfg.preference)
        else cfg.preference
    )
    # text tasks share one encoder + tokenizer between the data (tokenising) and the module
    backbone = hydra.utils.instantiate(cfg.encoder) if cfg.get("encoder") else None
    model_s = time.perf_counter() - start
    shared = {} if backbone is None else {"tokenizer": backbone.tokenizer}
    data = hydra.utils.instantiate(cfg.data, **shared)
    data_start = time.perf_counter()
    if isinstance(data, L.LightningDataModule):
        # read, sample and tokenise now (fit would do it too): a job's fixed cost is then timed
        # apart from training, and bad data fails before the trainer exists. Every DDP rank
        # runs this; the data are small (few-shot) or cached by the datasets library.
        data.setup("fit")
    data_s = time.perf_counter() - data_start
    combiner = hydra.utils.instantiate(cfg.combiner)
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision.startswith("16"):
        # checked here as well as in the module: on CPU Lightning silently turns 16-mixed into
        # bf16-mixed, so the module would never see what was asked for
        raise ValueError(
            f"trainer.precision={precision} is not supported: the Gram combiners write .grad by "
            "hand, bypassing the loss scaler, and the module skips non-finite steps itself, "
            "which a loss scaler expects to do. Use 32-true or bf16-mixed"
        )
    optimizer = hydra.utils.instantiate(cfg.optimizer)
    try:  # the optimizer checks its settings (lr, betas, ...) only once built: build one now
        import torch

        optimizer([torch.nn.Parameter(torch.zeros(1))])
    except ValueError as err:
        raise ValueError(f"optimizer: {err}") from None
    module = hydra.utils.instantiate(
        cfg.module,
        combiner=combiner,
        preference=preference,
        optimizer=optimizer,
        # the number of classes comes from the data (the task), not a second copy in the config
        **({"num_labels": data.num_labels} if hasattr(data, "num_labels") else {}),
        scheduler=hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        **({} if backbone is None else {"backbone": backbone}),
    )
    setup_s = time.perf_counter() - start
    # checkpoints carry the settings that made them; resuming with others is refused
    callbacks = [*_instantiate_all(cfg, "callbacks"), SettingsGuard(settings, ConfigError)]
    loggers = _instantiate_all(cfg, "logger")
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    if loggers:
        flat = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
        resolved = OmegaConf.to_container(
            OmegaConf.create(flat | {"paths": {"run_dir": str(run_dir)}}), resolve=True
        )
        for lg in loggers:
            lg.log_hyperparams(resolved)

    fit_start = time.perf_counter()
    _STAGE["training"] = True
    stopped = None
    try:
        # weights_only: a checkpoint is read as tensors and plain containers, never as code
        trainer.fit(module, datamodule=data, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except NonFiniteError as err:  # recorded as the run's status, not a crash
        stopped = str(err)
    fit_s = time.perf_counter() - fit_start
    status, why = ("diverged", stopped) if stopped else run_status(module, trainer)

    metrics: dict = {
        "task": cfg.task_name,
        "status": status,
        "choices": _choices(),
        "num_train": cfg.data.get("num_train"),
        "combiner": combiner.name,  # the one that ran (single-objective losses: ls)
        "seed": cfg.seed,
        "preference": [float(v) for v in module.preference],
        "steps": trainer.global_step,
        "combiner_fallbacks": module.fallbacks,
        "skipped_steps": module.skipped_steps,
    }
    test_start = time.perf_counter()
    if status == "ok":
        metrics.update(
            {k: _scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        )
        if cfg.get("test") and hasattr(data, "test_dataloader"):
            # the module restores its best-validation weights itself (memory and checkpoints)
            results = trainer.test(module, datamodule=data, verbose=False)
            metrics.update({k: _scalar(v) for k, v in (results[0] if results else {}).items()})
    else:
        # no headline accuracy: a diverged or unvalidated run must not enter a table
        metrics["status_reason"] = why
        log.error("run %s: %s (recorded in metrics.json)", status, why)
    if not trainer.is_global_zero:
        # DDP: every rank trained and evaluated (metrics are synchronised); one writes
        return None
    if hasattr(module, "export"):
        metrics.update(module.export(run_dir))
    metrics["timing_s"] = {
        "setup": setup_s,  # everything before the trainer: the fixed cost of a job
        "encoder": model_s,  # encoder + tokenizer (a deep copy when cached in this process)
        "data": data_s,  # read, sample, tokenise (validation/test reused when cached)
        "fit": fit_s,
        "test": time.perf_counter() - test_start,
        # imports and Hydra's set-up before the first job of a process; 0 for later jobs
        "process_before_run": _process_before_run(start),
    }
    metrics["cache_hits"] = {
        "encoder": bool(getattr(backbone, "cache_hit", False)),
        "data": bool(getattr(data, "cache_hit", False)),
    }
    metrics["wall_time_s"] = time.perf_counter() - start
    metrics["settings"] = settings  # what produced this result, compared before any skip
    metrics["complete"] = True  # the job finished; `status` says whether it has a result
    for lg in loggers:
        _finish_logger(lg, metrics)
    # written last and atomically: an interrupted job leaves no metrics.json behind
    write_json_atomic(run_dir / "metrics.json", metrics)
    log.info(_summary(run_dir, metrics))
    if status != "ok":
        _OUTCOMES.append(status)
        return None
    key = cfg.get("optimized_metric")
    return metrics.get(key) if key else None


# settings that do not change a run's result: left out of the record compared before a finished
# job is skipped or a checkpoint resumed (dotted prefixes)
_NOT_SETTINGS = (
    "hydra",
    "paths",
    "logger",
    "callbacks",
    "ckpt_path",
    "skip_completed",
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


def _summary(run_dir: Path, m: dict) -> str:
    """The block every run ends with: its folder, headline results and the time it took."""
    heads = [
        f"{k} {m[k]:.4g}"
        for k in ("val/acc_best", "test/acc", "hv_ratio", "final_g")
        if isinstance(m.get(k), float)
    ]
    if m.get("best_step") is not None and "val/acc_best" in m:
        heads.append(f"best at step {m['best_step']}")
    losses = m.get("final_losses") or m.get("final_train_losses")
    if losses and not isinstance(losses[0], list):
        heads.append("final losses (" + ", ".join(f"{v:.4f}" for v in losses) + ")")
    counts = f"{m.get('steps')} steps, {m.get('skipped_steps')} skipped"
    lines = [
        f"== {m['status']}: {run_dir}",
        "   " + (" · ".join(heads) if heads else m.get("status_reason", "")),
        f"   {counts} · {m['wall_time_s']:.1f} s (fit {m['timing_s']['fit']:.1f} s) · metrics.json",
    ]
    return "\n".join(lines)


def _settings(cfg: DictConfig) -> dict:
    """The resolved settings that define this run's result (plain containers)."""
    top = [k for k in cfg if k not in _NOT_SETTINGS]  # hydra's own node is never resolved
    full = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in top
    }

    def keep(tree, prefix=""):
        if not isinstance(tree, dict):
            return tree
        return {
            k: keep(v, f"{prefix}{k}.")
            for k, v in tree.items()
            if f"{prefix}{k}" not in _NOT_SETTINGS
        }

    settings = keep(full)
    data = settings.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        data["path"] = os.path.abspath(data["path"])  # the same folder however it was named
    return settings


def _check_ckpt_path(path) -> None:
    if path is None or path == "last":
        return
    if "://" in str(path):
        raise ValueError(
            f"ckpt_path={path!r}: remote checkpoints are not loaded (a checkpoint file can carry "
            "code); download it, check it, and pass its local path"
        )
    if not Path(path).is_file():
        raise FileNotFoundError(f"ckpt_path={path!r} is not a file (or use ckpt_path=last)")
    import torch

    try:  # read as data only (the fit reads it the same way); memory-mapped, so cheap
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # unpickling refused, or not a torch checkpoint at all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"ckpt_path={path!r} was not loaded: a checkpoint is read as weights and plain state "
            f"only, and this file is not one ({first})"
        ) from None


def _is_leader() -> bool:
    """Rank 0 of a DDP run started by Lightning, SLURM or submitit (or a single process)."""
    keys = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    return all(os.environ.get(k, "0") == "0" for k in keys)


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _join_submitit_tasks() -> None:
    """A sweep job launched by submitit with several tasks (hydra/launcher=slurm_ddp or
    local_ddp) is one DDP run: each task is a rank. On SLURM Lightning reads the rank layout
    itself; submitit's local executor sets no such variables, so they are derived here from
    submitit's job environment (Lightning then uses the processes it finds instead of starting
    its own)."""
    if "SUBMITIT_LOCAL_JOB_ID" not in os.environ:  # SLURM, or no submitit at all
        return
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks < 2:
        return
    # every task derives the same port from the job id, below Linux's ephemeral range
    # (32768-60999), where outgoing connections could already hold it
    os.environ.update(
        MASTER_ADDR=env.hostnames[0] if env.hostnames else "127.0.0.1",
        MASTER_PORT=os.environ.get(
            "MASTER_PORT", str(10000 + zlib.crc32(str(env.job_id).encode()) % 20000)
        ),
        NODE_RANK=str(env.node),
        LOCAL_RANK=str(env.local_rank),
        WORLD_SIZE=str(env.num_tasks),
    )


def _process_before_run(start: float) -> float:
    _STAGE["runs"] += 1
    return start - _PROCESS_START if _STAGE["runs"] == 1 else 0.0


def _choices() -> dict:
    """The config-group options this run was composed from (task, model, objective, ...)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}


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
    lg.finalize("success")
    if hasattr(experiment, "finish"):
        experiment.finish()


def _scalar(v):
    return float(v.item()) if hasattr(v, "item") else v


_SEED_RANGE = re.compile(r"^(\+{0,2}seed)=(\d+)-(\d+)$")


def normalise_argv(argv: list[str]) -> list[str]:
    """Make the command users type work with Hydra's parser: `seed=A-B` becomes the inclusive
    sweep `seed=range(A,B+1)`, and `-m`/`--multirun` may stand anywhere (argparse only accepts it
    before the overrides)."""
    multirun = [a for a in argv[1:] if a in ("-m", "--multirun")]
    rest = []
    for arg in argv[1:]:
        if arg in ("-m", "--multirun"):
            continue
        m = _SEED_RANGE.match(arg)
        if m:
            key, a, b = m.group(1), int(m.group(2)), int(m.group(3))
            if b < a:
                raise SystemExit(f"error: {arg}: the range end must be >= its start")
            if not multirun:
                raise SystemExit(f"error: {arg} is a sweep over seeds; add -m (multirun)")
            arg = f"{key}=range({a},{b + 1})"
        rest.append(arg)
    return argv[:1] + multirun[:1] + rest


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return run(cfg)
    except Exception as err:
        user_error = _user_error(err)
        if user_error is None:
            raise
        # bad input or no network: one line naming the key and what is allowed, no traceback
        sys.exit(f"error: {user_error}")


def _user_error(err: BaseException) -> BaseException | None:
    """The bad-input or no-network error inside ``err``'s cause chain (Hydra wraps errors raised
    while instantiating), or None for a genuine failure that deserves its traceback. Before
    training every ValueError / FileNotFoundError is a setting or a file the user gave; once
    ``trainer.fit`` has started only errors that declare themselves bad settings are."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import OmegaConfBaseException

    from moo_lightning.hub import HubUnreachableError
    from moo_lightning.module import ConfigError

    user: tuple[type[BaseException], ...] = (
        ConfigError,
        FolderBusyError,
        HubUnreachableError,
        MisconfigurationException,
        OmegaConfBaseException,
    )
    if not _STAGE["training"]:
        user += (ValueError, FileNotFoundError)
    while err is not None:
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


if __name__ == "__main__":
    sys.argv = normalise_argv(sys.argv)
    main()
    sys.exit(_exit_code())
