"""Train one model (or one ensemble) with a gradient combiner; the Hydra entry point.

python train.py task=toy combiner=epo preference=[0.2,0.8]
python train.py task=qnli combiner=epo -m seed=0-9
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("moo_lightning")


def _instantiate_all(cfg: DictConfig, section: str) -> list:
    group = cfg.get(section)
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if c is not None]


def run(cfg: DictConfig) -> float | None:
    """Instantiate data, combiner, module, callbacks, loggers and trainer; fit; test the
    best-by-validation checkpoint when the task has a validation metric; write metrics.json."""
    import lightning as L

    start = time.perf_counter()
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.seed is not None:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)

    preference = (
        OmegaConf.to_object(cfg.preference)
        if OmegaConf.is_config(cfg.preference)
        else cfg.preference
    )
    # text tasks share one encoder + tokenizer between the data (tokenising) and the module
    backbone = hydra.utils.instantiate(cfg.model) if cfg.get("model") else None
    shared = {} if backbone is None else {"tokenizer": backbone.tokenizer}
    data = hydra.utils.instantiate(cfg.data, **shared)
    combiner = hydra.utils.instantiate(cfg.combiner)
    precision = str(cfg.trainer.get("precision", "32-true"))
    if combiner.needs_gram and precision.startswith("16"):
        # checked here as well as in the module: on CPU Lightning silently turns 16-mixed into
        # bf16-mixed, so the module would never see what was asked for
        raise ValueError(
            f"trainer.precision={precision} cannot be used with combiner {combiner.name!r}: its "
            "hand-written gradients bypass the loss scaler. Use 32-true or bf16-mixed"
        )
    module = hydra.utils.instantiate(
        cfg.module,
        combiner=combiner,
        preference=preference,
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        **({} if backbone is None else {"backbone": backbone}),
    )
    callbacks = _instantiate_all(cfg, "callbacks")
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

    trainer.fit(module, datamodule=data, ckpt_path=cfg.get("ckpt_path"))

    metrics: dict = {
        "task": cfg.task_name,
        "num_train": cfg.data.get("num_train"),
        "combiner": type(combiner).__name__,
        "seed": cfg.seed,
        "preference": [float(v) for v in module.preference],
        "combiner_fallbacks": module.fallbacks,
        "skipped_steps": module.skipped_steps,
    }
    metrics.update(
        {k: _scalar(v) for k, v in trainer.callback_metrics.items() if not k.startswith("train/")}
    )
    if cfg.get("test") and hasattr(data, "test_dataloader"):
        # the module restores its best-validation weights itself (kept in memory and checkpoints)
        results = trainer.test(module, datamodule=data, verbose=False)
        metrics.update({k: _scalar(v) for k, v in (results[0] if results else {}).items()})
    if hasattr(module, "export"):
        metrics.update(module.export(run_dir))
    metrics["wall_time_s"] = time.perf_counter() - start
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info(
        "metrics: %s", json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list)})
    )

    key = cfg.get("optimized_metric")
    return metrics.get(key) if key else None


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
    while instantiating), or None for a genuine failure that deserves its traceback."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import OmegaConfBaseException

    from moo_lightning.models import HubUnreachableError

    user = (
        ValueError,
        FileNotFoundError,
        HubUnreachableError,
        MisconfigurationException,
        OmegaConfBaseException,
    )
    while err is not None:
        if isinstance(err, user):
            return err
        err = err.__cause__
    return None


if __name__ == "__main__":
    sys.argv = normalise_argv(sys.argv)
    main()
