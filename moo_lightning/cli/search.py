"""Hydra callbacks that check what Hydra itself would fail on with a traceback, before any job
runs: a run or sweep folder this process cannot write, and an Optuna search that cannot work
(its search space, its trial count, its storage). Each is one line naming the setting. A search
in which no trial returned its metric ends in one line as well, not Optuna's "No trials are
completed yet" traceback. Registered in conf/hydra/default.yaml (``hydra.callbacks``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def _fail(message: str) -> None:
    # SystemExit passes through Hydra's error reporting, which prints a traceback for errors
    sys.exit(f"error: {message}")


def writable_folder(path: Path, key: str) -> None:
    """``path`` (made later by Hydra when missing) must be writable: the folder itself when it
    exists, otherwise its nearest existing parent."""
    existing = Path(os.path.abspath(path))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        _fail(f"{key}={path}: {existing} is not a folder")
    probe = existing / f".write-test-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        where = "it" if existing == Path(os.path.abspath(path)) else f"its parent {existing}"
        _fail(
            f"{key}={path}: {where} is not writable ({err.strerror or err}); give a folder you "
            "can write to"
        )


def _is_optuna(config: DictConfig) -> bool:
    target = OmegaConf.select(config, "hydra.sweeper._target_", default="") or ""
    return "optuna" in str(target).lower()


def check_optuna(config: DictConfig) -> None:
    """The Optuna sweeper's settings, as the plugin would read them: every search dimension a
    valid distribution, at least one trial, and a sqlite storage in an existing folder."""
    sweeper = config.hydra.sweeper
    n_trials = sweeper.get("n_trials")
    if not (isinstance(n_trials, int) and not isinstance(n_trials, bool) and n_trials >= 1):
        _fail(f"hydra.sweeper.n_trials must be an integer >= 1. Found {n_trials!r}")
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    params = sweeper.get("params") or {}
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    for line in [f"{k}={v}" for k, v in params.items()] + list(task):
        try:
            create_params_from_overrides([line])
        except (ValueError, AssertionError, NotImplementedError) as err:
            key = line.split("=", 1)[0]
            _fail(
                f"hydra.sweeper.params: {line!r} is not a search dimension Optuna accepts "
                f"({err}); {key}: interval(low, high) with low <= high (low > 0 with tag(log, "
                "...)), or choice(a, b, ...)"
            )
    storage = sweeper.get("storage")
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        path = Path(storage[len("sqlite:///") :])
        if path.name and not path.parent.is_dir():
            _fail(
                f"hydra.sweeper.storage={storage}: the folder {path.parent} does not exist "
                "(make it first; the study's file is created there)"
            )


# the search this process runs now: the patched sweep names its metric and folder (a second
# search in the same process, as in tests, must not be described by the first one's config)
_CURRENT: dict = {}


def _no_completed_trial(config: DictConfig):
    """Optuna's sweeper, ending a search in which no trial returned its metric, raises "No
    trials are completed yet" from ``study.best_trial``: say it in one line instead."""
    from hydra_plugins.hydra_optuna_sweeper import _impl

    _CURRENT["metric"] = config.get("optimized_metric")
    _CURRENT["dir"] = config.hydra.sweep.dir
    sweep = _impl.OptunaSweeperImpl.sweep
    if getattr(sweep, "_one_line", False):
        return

    def checked(self, arguments):
        try:
            return sweep(self, arguments)
        except ValueError as err:
            if "No trials are completed yet" not in str(err):
                raise
            _fail(
                f"no trial of the search returned optimized_metric={_CURRENT['metric']}: each "
                "diverged, never validated, or does not record that key (see the trials' "
                f"metrics.json under {_CURRENT['dir']}); nothing was chosen"
            )

    checked._one_line = True
    _impl.OptunaSweeperImpl.sweep = checked


class FolderAndSearchChecks(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        writable_folder(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        writable_folder(Path(config.hydra.sweep.dir), "hydra.sweep.dir")
        if _is_optuna(config):
            check_optuna(config)
            _no_completed_trial(config)
