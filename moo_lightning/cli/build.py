"""Every part of a run built from its config, in order (seed, encoder, data, combiner, optimizer,
module, callbacks, loggers, trainer), with the checks that must fail before training starts."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from moo_lightning.cli.checks import checkpoint_folders, resume_file
from moo_lightning.cli.errors import BadSetting, user_error
from moo_lightning.cli.naming import is_multirun
from moo_lightning.errors import ConfigError
from moo_lightning.records import (
    ChecksummedCheckpointIO,
    SettingsGuard,
    check_checkpoint,
    check_resume_point,
)

# the model a finished run leaves in its folder (save_model=true)
MODEL_FILE = "model.ckpt"


log = logging.getLogger("moo_lightning")


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


def build(cfg: DictConfig, run_dir: Path, settings: dict, start: float) -> Job:
    """Every part of the run from the config. A ValueError or FileNotFoundError raised here is a
    setting, a file or the data the user gave: it becomes one line (BadSetting). Other errors
    (a bug, an import error) keep their traceback."""
    try:
        return _build(cfg, run_dir, settings, start)
    except Exception as err:
        cause = user_error(err, building=True)
        if cause is None:
            raise
        raise BadSetting(str(cause)) from err


def _build(cfg: DictConfig, run_dir: Path, settings: dict, start: float) -> Job:
    import lightning as L
    import torch

    from moo_lightning.module import ConfigError, InformsData, InformsModule

    check_checkpoint(cfg.get("ckpt_path"))
    saves_model(cfg)  # a wrong value fails before training, not after
    if cfg.get("ckpt_path") == "last":
        if is_multirun() and not any(f.is_dir() and any(f.glob("*.ckpt")) for f in
                                     checkpoint_folders(cfg)):  # fmt: skip
            # a sweep resumed with -m ... ckpt_path=last: a job that never started (or died
            # before its first checkpoint) has nothing to resume and starts from scratch
            log.info("%s: no checkpoint to resume from; starting this job", run_dir)
            OmegaConf.update(cfg, "ckpt_path", None, force_add=True)
        else:
            check_last_checkpoint(cfg, run_dir)
    resume = resume_file(cfg)
    if resume is not None and cfg.get("ckpt_path") == "last":
        check_checkpoint(str(resume))  # its checksum first: a damaged file is one line
    check_resume_point(resume, settings)  # before Lightning loads any weights
    if cfg.seed is not None:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    timing = {}
    # a text module's encoder is built first: the data use its tokenizer, and the module gets
    # the same object (module_arguments) in place of its config
    encoder = hydra.utils.instantiate(cfg.module.encoder) if cfg.module.get("encoder") else None
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
    resolve_monitor_modes(cfg, module)
    # checkpoints carry the settings that made them; resuming with others is refused
    callbacks = [*instantiate_all(cfg, "callbacks"), SettingsGuard(settings, ConfigError)]
    callbacks += progress_bar(cfg, callbacks)
    # the W&B label r: the preference as typed (0.2 or [0.1,0.9]) when the run follows one
    followed = module.recorded_preference is not None
    loggers = instantiate_all(cfg, "logger", preference=preference if followed else None)
    if cfg.get("ckpt_path") is not None:
        loggers = [continue_log(lg, cfg) for lg in loggers]
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


def continue_log(logger, cfg: DictConfig):
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


def saves_model(cfg: DictConfig) -> bool:
    """save_model: true, false, or auto (the default): a single run keeps its tested model, the
    jobs of a sweep (-m) keep none (91 MB per MiniLM job, ~500 MB per RoBERTa-base job)."""
    value = cfg.get("save_model", "auto")
    if value == "auto":
        return not is_multirun()
    if not isinstance(value, bool):
        raise ValueError(f"save_model must be true, false or auto. Found {value!r}")
    return value


def check_last_checkpoint(cfg: DictConfig, run_dir: Path) -> None:
    """``ckpt_path=last`` needs a checkpoint to resume from: Lightning would otherwise train
    from scratch with only a warning, and the run would look resumed."""
    folders = checkpoint_folders(cfg)
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


def progress_bar(cfg: DictConfig, callbacks: list) -> list:
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


_UNSET = object()


def resolve_monitor_modes(cfg: DictConfig, module) -> None:
    """``mode: auto`` of a callback that follows a metric (early stopping, a checkpoint) becomes
    ``max`` or ``min`` as the module says of that metric (``monitor_mode``): early stopping on a
    loss with ``max`` would stop while the loss still falls. A metric the module does not
    describe needs its mode given."""
    for name, c in (cfg.get("callbacks") or {}).items():
        if c is None or c.get("mode") != "auto" or "monitor" not in c:
            continue
        monitor = c.get("monitor")
        mode = module.monitor_mode(str(monitor)) if hasattr(module, "monitor_mode") else None
        if mode is None:
            raise ConfigError(
                f"callbacks.{name}.mode=auto: whether larger {monitor} is better is not known "
                f"to {type(module).__name__}; give callbacks.{name}.mode=min or max"
            )
        with open_dict(c):
            c.mode = mode


def instantiate_all(cfg: DictConfig, section: str, preference=_UNSET) -> list:
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
