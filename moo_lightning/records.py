"""What a run leaves behind, made trustworthy: one writer per run folder, the settings that
produced a result (compared key by key before a finished job is skipped or a checkpoint resumed),
checksummed checkpoints, and a status that keeps diverged or unvalidated runs out of tables. The
record itself (metrics.json) is moo_lightning.record."""

from __future__ import annotations

import fcntl
import hashlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from moo_lightning.errors import ConfigError, FolderBusyError, RunFolderUnwritable
from moo_lightning.record import short_name, upgrade_settings


class FolderLock:
    """An exclusive, non-blocking lock on a run folder (``.lock`` inside it), released when the
    process ends however it ends (an OS file lock, not a marker file)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if not isinstance(err, BlockingIOError):  # a filesystem without locks (some NFS)
                os.close(fd)
                raise ValueError(
                    f"{self.path.parent}: the filesystem refuses file locks ({err.strerror}); "
                    "run jobs from a folder on a filesystem that supports flock"
                ) from None
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FolderBusyError(
                f"{self.path.parent} is being written by {holder}; wait for it or use "
                "another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _leaves(tree, prefix: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], tree


def describe_differences(diff: list[str], most: int = 5) -> str:
    """The first ``most`` differences of ``settings_differences``, and how many more."""
    more = f"; {len(diff) - most} more" if len(diff) > most else ""
    return "; ".join(diff[:most]) + more


# targets that moved in 0.2 (tasks moved into tasks/): settings recorded before are compared
# under their new names (keys that moved: record.upgrade_settings)
_MOVED_TARGETS = {
    "moo_lightning.models.": "moo_lightning.tasks.glue.encoders.",
    "moo_lightning.data.": "moo_lightning.tasks.glue.data.",
    "moo_lightning.objectives.": "moo_lightning.tasks.glue.objectives.",
    "moo_lightning.text.": "moo_lightning.tasks.glue.module.",
    "moo_lightning.toy.": "moo_lightning.tasks.toy.",
    "moo_lightning.combiners.linear.": "moo_lightning.combiners.ls.",
}


def _current_names(settings: dict) -> dict:
    leaves = {}
    for key, value in _leaves(upgrade_settings(settings)):
        if key.endswith("_target_") and isinstance(value, str):
            for old, new in _MOVED_TARGETS.items():
                if value.startswith(old):
                    value = new + value[len(old) :]
        leaves[key] = value
    return leaves


def settings_differences(saved: dict, current: dict) -> list[str]:
    """The settings (dotted keys present in both) whose values differ, as 'key: saved → now'.
    Keys present on one side only (a setting added by a later version with its default) are not
    differences; settings saved under names that have since moved are compared under the new."""
    a, b = _current_names(saved), dict(_leaves(current))
    return [
        f"{short_name(k)}: {a[k]!r} → {b[k]!r}"  # named as users type them (encoder.name)
        for k in sorted(a.keys() & b.keys())
        if a[k] != b[k]
    ]


class SettingsGuard(L.Callback):
    """Stores the settings that made a run in its checkpoints and refuses, with one line, to
    resume from a checkpoint made with other settings (another combiner, model, data, ...)."""

    def __init__(self, settings: dict, error: type[Exception] = ValueError):
        self.settings = settings
        self.error = error

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint["run_settings"] = self.settings

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        saved = checkpoint.get("run_settings")
        if saved is None:
            raise self.error(
                "ckpt_path: the checkpoint records no settings (not written by moo-lightning's "
                "train.py), so it cannot be checked against this run; refusing to resume from it"
            )
        diff = settings_differences(saved, self.settings)
        if diff:
            raise self.error(
                f"ckpt_path: the checkpoint was made with other settings "
                f"({describe_differences(diff)}); resume with the settings that made it"
            )


def run_status(module: L.LightningModule, trainer: L.Trainer) -> tuple[str, str]:
    """(status, why) of a finished fit: non-finite weights, no optimizer step, or (for modules
    that validate) no validation mean there is no result to report."""
    bad = [n for n, p in module.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        return "diverged", f"{len(bad)} parameter tensors hold NaN/inf (first: {bad[0]})"
    trailing = getattr(module, "_consecutive_bad", 0)
    if trailing:
        return "diverged", (
            f"the last {trailing} training steps had non-finite losses or gradients and were "
            f"skipped ({getattr(module, 'skipped_steps', trailing)} skipped in all)"
        )
    if trainer.global_step == 0:
        return "no_steps", "no optimizer step was taken (check the step/epoch budget)"
    if hasattr(module, "val_history") and not module.val_history:
        return "no_validation", (
            "validation never ran (trainer.val_check_interval larger than the budget?)"
        )
    return "ok", ""


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path) -> bool:
    """Compare a checkpoint with the SHA-256 written beside it (``<file>.sha256``). True when it
    matches, False when there is no checksum file; a mismatch is refused with one line."""
    path = Path(path).resolve()  # last.ckpt may be a link to the newest checkpoint
    side = Path(f"{path}.sha256")
    if not side.is_file():
        warnings.warn(
            f"checkpoint {path} has no checksum file ({side.name}): not verified (it is still "
            "read as weights and plain state only)",
            stacklevel=2,
        )
        return False
    expected = side.read_text().split()[0] if side.read_text().strip() else ""
    found = file_sha256(path)
    if found != expected:
        raise ConfigError(
            f"checkpoint {path} does not match its checksum ({side.name}: {expected[:12]}…, "
            f"file: {found[:12]}…): it was changed or damaged after it was written; not loaded"
        )
    return True


class ChecksummedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer and reader, with a SHA-256 beside every checkpoint it writes
    (``<file>.sha256``), checked before any checkpoint that has one is read."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        side = Path(f"{path}.sha256")
        side.unlink(missing_ok=True)  # a file being replaced must not keep the old checksum
        super().save_checkpoint(checkpoint, path, storage_options)
        if not Path(path).is_file():  # Lightning's writer swallows a PermissionError
            raise RunFolderUnwritable(
                f"{path} could not be written (is {Path(path).parent} writable?)"
            )
        tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
        tmp.write_text(f"{file_sha256(path)}  {Path(path).name}\n")
        os.replace(tmp, side)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        verify_checksum(path)
        kwargs = {} if map_location is None else {"map_location": map_location}
        return super().load_checkpoint(path, weights_only=weights_only, **kwargs)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        Path(f"{path}.sha256").unlink(missing_ok=True)


def check_checkpoint(path) -> None:
    """Refuse a remote checkpoint, a missing file, or a file that is not weights and plain
    state (read with weights_only, the way the fit reads it)."""
    if path is None or path == "last":
        return
    if "://" in str(path):
        raise ValueError(
            f"ckpt_path={path!r}: remote checkpoints are not loaded (a checkpoint file can carry "
            "code); download it, check it, and pass its local path"
        )
    if not Path(path).is_file():
        raise FileNotFoundError(f"ckpt_path={path!r} is not a file (or use ckpt_path=last)")
    verify_checksum(path)
    try:  # read as data only (the fit reads it the same way); memory-mapped, so cheap
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # unpickling refused, or not a torch checkpoint at all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"ckpt_path={path!r} was not loaded: a checkpoint is read as weights and plain state "
            f"only, and this file is not one ({first})"
        ) from None


def check_resume_point(path, settings: dict) -> None:
    """A checkpoint to resume from, read (as data, memory-mapped) before the trainer loads it:
    it must hold a training state, not only weights (a run's model.ckpt), and have been made
    with these settings. Lightning would otherwise load the weights first and fail on a shape
    mismatch or on the missing optimizer state with a traceback, before SettingsGuard speaks."""
    if path is None:
        return
    state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(state, dict) or "optimizer_states" not in state or "loops" not in state:
        raise ValueError(
            f"ckpt_path={str(path)!r} holds a model's weights only (a finished run's model.ckpt), "
            "not a training state to resume from: resume from checkpoints/last.ckpt of a run with "
            "callbacks=resume, or test the model with moo-evaluate <run folder>"
        )
    saved = state.get("run_settings")
    if isinstance(saved, dict):
        diff = settings_differences(saved, settings)
        if diff:
            raise ValueError(
                f"ckpt_path: the checkpoint was made with other settings "
                f"({describe_differences(diff)}); resume with the settings that made it"
            )


def data_fingerprint(path) -> dict[str, str]:
    """The content of a data folder's files (the files directly inside it, not hidden ones) as
    {name: SHA-256, first 16 hex digits}: recorded with a run's settings, so that a file edited
    in place (same path, even the same size and time stamp) makes other settings, never a
    finished job that is skipped as if it had been trained on the new rows."""
    folder = Path(path)
    if not folder.is_dir():
        return {}
    return {
        f.name: file_sha256(f)[:16]
        for f in sorted(folder.iterdir())
        if f.is_file() and not f.name.startswith(".")
    }
