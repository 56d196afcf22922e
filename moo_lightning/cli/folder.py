"""A run folder before a job runs: one writer at a time (a lock held by rank 0), and whether the
finished job it may hold is this one (skipped), another one (refused) or must run again."""

from __future__ import annotations

import contextlib
from pathlib import Path

from omegaconf import DictConfig

from moo_lightning.cli.errors import BadSetting
from moo_lightning.launch import is_leader
from moo_lightning.record import RunRecord
from moo_lightning.records import FolderLock, describe_differences, settings_differences


def folder_lock(run_dir: Path):
    """The folder's lock on rank 0; every DDP rank takes the same skip / refuse decision from the
    same files (a rank that went on alone would wait for the others forever)."""
    return FolderLock(run_dir) if is_leader() else contextlib.nullcontext()


def finished_record(
    cfg: DictConfig, run_dir: Path, settings: dict, multirun: bool = False
) -> RunRecord | None:
    """The folder's finished record when this job may be skipped; None when it must run.
    A finished result made with other settings is refused (never overwritten) unless
    ``skip_completed=false`` asks for a re-run. Resuming (``ckpt_path``) a finished run is
    refused, except in a sweep: ``-m … ckpt_path=last`` resumes the interrupted jobs and skips
    the finished ones (with the same settings) like any re-run of a sweep."""
    done = RunRecord.find(run_dir)
    finished = done is not None and done.complete
    skip = bool(cfg.get("skip_completed"))
    if finished and cfg.get("ckpt_path") is not None and not (multirun and skip):
        # resuming a finished run would train nothing and rewrite its record without what the
        # interrupted parts of a fit hold (the validation history, the final training losses)
        raise BadSetting(
            f"ckpt_path={cfg.ckpt_path}: {run_dir} holds a finished run (status "
            f"{done.status}); there is nothing to resume, and its metrics.json is "
            "left as it is. Resume only an interrupted run (one without metrics.json)"
        )
    if not (finished and skip):
        return None
    if done.settings is None:
        raise BadSetting(
            f"{run_dir} holds a finished job from an earlier version that recorded no settings, "
            "so it cannot be checked against this command; it is left as it is. Use another "
            "folder (hydra.run.dir / hydra.sweep.dir)"
        )
    diff = settings_differences(done.settings, settings)
    if diff:
        raise BadSetting(
            f"{run_dir} holds a finished job made with other settings "
            f"({describe_differences(diff)}); its metrics.json, which records those settings, is "
            "left as it is. Use another folder (hydra.run.dir / hydra.sweep.dir) for these "
            "settings"
        )
    return done
