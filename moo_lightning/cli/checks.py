"""Run-level settings checked before anything is built: each wrong value is one line naming the
key, the value and what is allowed (the objects check their own arguments when built)."""

from __future__ import annotations

import math

from omegaconf import DictConfig


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_run_settings(cfg: DictConfig) -> None:
    seed = cfg.get("seed")
    if not (_is_int(seed) and seed >= 0):
        raise ValueError(f"seed must be an integer >= 0. Found {seed!r}")
    for key in ("test", "skip_completed"):
        value = cfg.get(key)
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false. Found {value!r}")
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and not isinstance(ckpt, str):
        raise ValueError(f"ckpt_path must be a file path, 'last' or null. Found {ckpt!r}")
    trainer = cfg.get("trainer") or {}
    for key in ("max_steps", "max_epochs"):
        value = trainer.get(key)
        if value is not None and not (_is_int(value) and value >= -1):
            raise ValueError(
                f"trainer.{key} must be an integer >= -1 (-1: no limit) or null. Found {value!r}"
            )
    interval = trainer.get("val_check_interval")
    if interval is not None:
        whole = _is_int(interval) and interval >= 1
        fraction = isinstance(interval, float) and math.isfinite(interval) and 0 < interval <= 1
        if not (whole or fraction):
            raise ValueError(
                "trainer.val_check_interval must be a number of steps >= 1 or a fraction of an "
                f"epoch in (0, 1]. Found {interval!r}"
            )


def check_optimized_metric(key) -> None:
    """A search maximises a validation or training metric, never a test metric: choosing
    settings by test results would make every reported test number optimistic."""
    if key is None:
        return
    if not isinstance(key, str) or not key.startswith(("val/", "train/")):
        raise ValueError(
            f"optimized_metric={key!r}: a search may optimise a validation or training metric "
            "(val/..., train/...; e.g. val/acc_best), never a test metric"
        )
