"""What counts as a setting (the keys that can change a run's result), a sweep job's folder name
from its overrides, and the config resolvers that need them (registered by the entry point)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from moo_lightning.cli.argv import fit_folder_name
from moo_lightning.record import short_name
from moo_lightning.records import data_fingerprint

# settings that do not change a run's result: left out of the record compared before a finished
# job is skipped or a checkpoint resumed (dotted prefixes)
NOT_SETTINGS = (
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
    "method",  # a label for tables
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.default_root_dir",
    "trainer.log_every_n_steps",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.num_nodes",
    "trainer.use_distributed_sampler",
    "module.encoder.cache",
    "data.cache",
    "data.num_workers",
    "data.eval_batch_size",
    "module.save_test_embeddings",
)


def changes_results(key: str) -> bool:
    """Whether the dotted setting ``key`` can change a run's result (it is not, and is not
    inside, one of NOT_SETTINGS)."""
    return not any(key == k or key.startswith(k + ".") for k in NOT_SETTINGS)


def settings(cfg: DictConfig) -> dict:
    """The resolved settings that define this run's result (plain containers)."""
    top = [k for k in cfg if changes_results(k)]  # hydra's own node is never resolved
    full = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in top
    }

    def keep(tree, prefix=""):
        if not isinstance(tree, dict):
            return tree
        return {
            k: keep(v, f"{prefix}{k}.") for k, v in tree.items() if changes_results(f"{prefix}{k}")
        }

    kept = keep(full)
    _resolved_modes(kept, cfg)
    data = kept.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        data["path"] = os.path.abspath(data["path"])  # the same folder however it was named
        kept["data_files"] = data_fingerprint(data["path"])  # what the files held
    return kept


def _resolved_modes(kept: dict, cfg: DictConfig) -> None:
    """A callback's ``mode: auto`` recorded as the mode it becomes (``max`` for val/acc_best,
    as the module class says): a folder finished with ``mode: max`` before ``auto`` existed is
    the same setting. Left as ``auto`` where the class does not say (the build refuses it)."""
    callbacks = kept.get("callbacks")
    target = OmegaConf.select(cfg, "module._target_", default=None)
    if not isinstance(callbacks, dict) or not target:
        return
    try:
        from hydra.utils import get_class

        module_class = get_class(target)
    except Exception:  # noqa: BLE001 - a wrong module is reported by the build, in one line
        return
    for c in callbacks.values():
        if isinstance(c, dict) and c.get("mode") == "auto" and "monitor" in c:
            mode = getattr(module_class, "monitor_mode", lambda _: None)(str(c["monitor"]))
            c["mode"] = mode or "auto"


def job_folder(overrides) -> str:
    """A sweep job's folder name (hydra.sweep.subdir): its command-line overrides that change
    results, sorted and joined by ',' (Hydra's override_dirname, so plain names are the same as
    Hydra's). Keys that change no result (logger, paths, devices, ...: NOT_SETTINGS) are left
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
        if not changes_results(key.replace("/", ".")):
            continue
        short = short_name(key)  # module/objective=ce is named objective=ce, as users type it
        if short != key:
            line = f"{prefix}{short}{line[len(prefix) + len(key) :]}"
            key = short
        name = key.replace("/", ".")
        if isinstance(value, str) and is_local_path(value):
            where = os.path.abspath(os.path.expanduser(value))
            digest = hashlib.sha256(where.encode()).hexdigest()[:6]
            line = f"{prefix}{name}={Path(where).name or 'root'}~{digest}"
        elif "/" in line:
            rest = line[len(prefix) + len(key) :]  # '=value' as typed
            line = f"{prefix}{name}{rest.replace('/', '--')}"
        lines.append(line)
    return fit_folder_name(",".join(sorted(lines)))  # a long name: cut, with a hash of it


def is_local_path(value: str) -> bool:
    return os.path.isabs(value) or value.startswith((".", "~")) or os.path.exists(value)


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


def register_resolvers() -> None:
    """The configs' own resolvers: hydra.sweep.subdir: ${job_folder:${hydra.overrides.task}}
    (hydra/default.yaml) and trainer.max_steps: ${few_shot_budget:${data.num_train},${budget}}
    (task/_glue.yaml). Called by the entry points before a config is composed or resolved."""
    OmegaConf.register_new_resolver("job_folder", job_folder, replace=True)
    OmegaConf.register_new_resolver("few_shot_budget", few_shot_budget, replace=True)


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def choices(cfg: DictConfig) -> dict:
    """The config-group options this run was composed from (task, data, module, encoder,
    objective, ...; the text module's groups under their short names), without Hydra's own and
    without a group the config switched off (null)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return {
        short_name(k): v
        for k, v in HydraConfig.get().runtime.choices.items()
        if not k.startswith("hydra") and not (k in cfg and cfg[k] is None)
    }
