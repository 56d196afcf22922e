"""Run-level settings checked before anything is built: each wrong value is one line naming the
key, the value and what is allowed (the objects check their own arguments when built)."""

from __future__ import annotations

import functools
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
    steps_only = _steps_only(cfg)
    if steps_only is not None:
        steps_only.check_budget(trainer.get("max_steps"))
    interval = trainer.get("val_check_interval")
    if interval is not None:
        whole = _is_int(interval) and interval >= 1
        fraction = isinstance(interval, float) and math.isfinite(interval) and 0 < interval <= 1
        if not (whole or fraction):
            raise ValueError(
                "trainer.val_check_interval must be a number of steps >= 1 or a fraction of an "
                f"epoch in (0, 1]. Found {interval!r}"
            )


def _steps_only(cfg: DictConfig):
    """The run's data class when it is a StepBatches (the toys: no data, one batch a step)."""
    from hydra.utils import get_class

    from moo_lightning.batches import StepBatches

    target = (cfg.get("data") or {}).get("_target_")
    try:
        cls = get_class(target) if isinstance(target, str) else None
    except Exception:  # noqa: BLE001 - a wrong target is reported when the data is built
        return None
    return cls if isinstance(cls, type) and issubclass(cls, StepBatches) else None


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


@functools.cache
def train_keys() -> frozenset[str]:
    """The top-level keys train.yaml itself holds (every run's config has them)."""
    from pathlib import Path

    import yaml

    train = Path(__file__).resolve().parent.parent / "conf" / "train.yaml"
    return frozenset(set(yaml.safe_load(train.read_text()) or {}) - {"defaults"})


@functools.cache
def known_top_level_keys() -> frozenset[str]:
    """Every top-level key the package's configs can produce: train.yaml's, the config groups'
    and those of the groups that write at the top level (``# @package _global_``)."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent / "conf"
    keys = set(train_keys())
    keys |= {d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("_")}
    for path in root.rglob("*.yaml"):
        text = path.read_text()
        if any("@package _global_" in line for line in text.splitlines()[:5]):
            try:
                keys |= set(yaml.safe_load(text) or {})
            except yaml.YAMLError:
                continue
    return frozenset(keys - {"defaults"})


def check_unknown_keys(cfg: DictConfig) -> None:
    """A top-level key none of the package's configs has (``++foo=1``, ``+lr=0.5``) is read by
    nothing: the run would silently ignore it. One line, with the dotted keys it may have meant."""
    import re

    from omegaconf import OmegaConf

    known = known_top_level_keys()
    tree = OmegaConf.to_container(cfg, resolve=False)
    # a helper value that an interpolation reads (+base_lr=1e-3 optimizer.lr='${base_lr}') is used
    referenced = set(re.findall(r"\$\{\s*([A-Za-z_][\w-]*)", repr(tree)))
    unknown = [k for k in cfg if k not in known and k != "hydra" and k not in referenced]
    if not unknown:
        return
    key = unknown[0]
    raise ValueError(
        f"{key}={cfg.get(key)!r}: no setting of this project is called {key!r} (added with +/++, "
        f"it would be ignored).{did_you_mean(meant_keys(key, tree))}"
    )


def meant_keys(key: str, tree: dict) -> list[str]:
    """The keys a top-level ``key`` that no config has may have meant: the dotted keys of
    ``tree`` (a composed config) that end in it (``lr``: optimizer.lr), then the closest
    top-level keys (``prefernce``: preference). A dotted ``key`` (``optimzer.lr``) is matched by
    its first part, the rest kept."""
    import difflib

    top, dot, rest = key.partition(".")
    ends = sorted(
        dotted
        for dotted in _dotted_keys(tree)
        if dotted.rsplit(".", 1)[-1] == top and "." in dotted and not dotted.startswith("hydra.")
    )
    known = sorted(k for k in known_top_level_keys() if k != "hydra")
    if dot and tree:  # a key inside: only the top-level keys that hold keys
        known = [k for k in known if isinstance(tree.get(k), dict)]
    close = [k + dot + rest for k in difflib.get_close_matches(top, known, n=3)]
    return list(dict.fromkeys(ends[:3] + close))[:3]


def did_you_mean(keys: list[str]) -> str:
    """`` Did you mean a or b?`` for the keys (nothing when there are none)."""
    return f" Did you mean {' or '.join(keys)}?" if keys else ""


def _dotted_keys(tree, prefix: str = ""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield f"{prefix}{k}"
            yield from _dotted_keys(v, f"{prefix}{k}.")


# the keys Hydra reads itself in a node it instantiates
_HYDRA_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")


def target_settings(target) -> list[str] | None:
    """The keyword settings the object ``target`` names (a class or a function, by its dotted
    path) accepts: its signature's parameters; None when it takes any (``**kwargs``) or cannot be
    imported here (the build reports that)."""
    import inspect

    from hydra.utils import get_object

    if not isinstance(target, str) or "${" in target:
        return None
    try:
        params = inspect.signature(get_object(target)).parameters.values()
    except Exception:  # noqa: BLE001 - an import error or a wrong target: the build reports it
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def unknown_setting(typed: str, where: str, key: str, target: str, accepted: list[str]) -> str:
    """The line for a setting ``where.key`` (``typed``: as the command gave it) that the object
    built from ``where`` does not take: the object, the closest settings it takes and all of
    them."""
    import difflib

    close = [f"{where}.{k}" for k in difflib.get_close_matches(key, accepted, n=2)]
    return (
        f"{typed}: {target} ({where}) takes no setting {key!r}.{did_you_mean(close)} "
        f"Its settings: {', '.join(accepted) or 'none'}"
    )


def check_target_settings(cfg: DictConfig) -> None:
    """A setting given to an object the config builds (``+combiner.epss=1``) that the object's
    constructor does not take would end in a TypeError while it is built: one line naming the
    key, with the settings the object takes. Objects taking ``**kwargs`` are not checked."""
    from omegaconf import OmegaConf

    from moo_lightning.record import short_name

    tree = OmegaConf.to_container(cfg, resolve=False)
    for where, node in _target_nodes({k: v for k, v in tree.items() if k != "hydra"}):
        accepted = target_settings(node["_target_"])
        if accepted is None:
            continue
        for key, value in node.items():
            if key not in _HYDRA_KEYS and key not in accepted:
                where = short_name(where)  # objective.lam, as typed, for module.objective.lam
                typed = f"{where}.{key}={value!r}"
                raise ValueError(unknown_setting(typed, where, key, node["_target_"], accepted))


def _target_nodes(tree, where: str = ""):
    """(dotted path, node) of every node of a config tree that names a ``_target_``."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for k, v in items:
        path = f"{where}.{k}" if where else str(k)
        if isinstance(v, dict):
            if "_target_" in v:
                yield path, v
            yield from _target_nodes(v, path)
        elif isinstance(v, list):
            yield from _target_nodes(v, path)


def checkpoint_folders(cfg: DictConfig) -> list:
    """The folders the config's ModelCheckpoint callbacks write to (``callbacks=resume``)."""
    from pathlib import Path

    return [
        Path(c.dirpath)
        for c in (cfg.get("callbacks") or {}).values()
        if c is not None
        and str(c.get("_target_", "")).endswith("ModelCheckpoint")
        and c.get("dirpath")
    ]


def resume_file(cfg: DictConfig):
    """The checkpoint file ``ckpt_path`` names: itself, or for ``last`` the newest ``last*.ckpt``
    in the folders of the config's ModelCheckpoint callbacks (the one Lightning picks); None
    when there is none (nothing to resume, or refused elsewhere)."""
    from pathlib import Path

    ckpt = cfg.get("ckpt_path")
    if ckpt is None or ckpt != "last":
        return ckpt if ckpt is None or Path(ckpt).is_file() else None
    folders = checkpoint_folders(cfg)
    found = [
        p
        for f in folders
        if f.is_dir()
        for p in f.iterdir()
        if "last" in p.name and p.name.endswith(".ckpt") and p.is_file()
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None
