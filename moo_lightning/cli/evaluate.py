"""Test a saved model again, later: ``moo-evaluate RUN [key=value ...]`` (``python evaluate.py``
in a checkout).

RUN is a run folder (its ``model.ckpt``, left by ``save_model=true``, the default for single
runs) or a checkpoint file inside one (``checkpoints/best/best-step=N.ckpt``,
``checkpoints/last.ckpt``: tested the way the run would have tested it at that point, with its
best-validation weights). The run is rebuilt from the config it saved (``.hydra/config.yaml``),
so nothing has to be repeated; ``key=value`` pairs change values of it, e.g. another copy of the
data (``data.path=...``), a larger evaluation batch (``data.eval_batch_size=256``) or a device
(``trainer.accelerator=gpu``). The checkpoint's SHA-256 is checked before it is read, and it is
read as weights only. The config is data, not code: before anything is built, every ``_target_``
in it must be one the package's own configs build (or an optimizer class, or one named with
``--trust``); anything else is refused in one line.

Writes ``evaluation.json`` into the run folder (``--out FILE`` elsewhere; the run's own
``metrics.json`` is never touched): the test metrics, the checkpoint and its SHA-256, the changes
asked for and, when nothing changed, whether the recorded test metrics were reproduced.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from moo_lightning.cli.argv import expand_short_form
from moo_lightning.cli.build import MODEL_FILE
from moo_lightning.cli.trust import UntrustedConfig, checked_config
from moo_lightning.errors import EvaluationError
from moo_lightning.record import (
    RunRecord,
    old_split_seed,
    scalar,
    upgrade_settings,
    write_json_atomic,
)
from moo_lightning.records import file_sha256, settings_differences

# settings forced for a re-evaluation: one process, nothing written but evaluation.json
_EVALUATION = {
    "ckpt_path": None,
    "trainer": {
        "strategy": "auto",
        "devices": 1,
        "num_nodes": 1,
        "fast_dev_run": False,
        "enable_checkpointing": False,
        "profiler": None,  # debug=profiler would rewrite the run's own profile tables
    },
}
# settings read from the run's record (resolved when it ran: absolute paths, environment
# variables such as MNIST_DIR) rather than re-resolved here, in another folder or environment
_PINNED = ("data.path", "module.encoder.name")


def find_run(target: Path) -> tuple[Path, Path]:
    """(run folder, checkpoint) for a run folder or a checkpoint file inside one."""
    if not target.exists():
        raise EvaluationError(f"{target}: no such run folder or checkpoint file")
    if target.is_dir() and not (target / ".hydra" / "config.yaml").is_file():
        runs = sorted(str(c.parent.parent) for c in target.glob("**/.hydra/config.yaml"))
        inside = f"; run folders inside it: {', '.join(runs[:3])}" if runs else ""
        more = f" and {len(runs) - 3} more" if len(runs) > 3 else ""
        raise EvaluationError(f"{target} is not a run folder (no .hydra/config.yaml){inside}{more}")
    if target.is_dir():
        run_dir, ckpt = target, target / MODEL_FILE
        if not ckpt.is_file():
            found = sorted(str(p) for p in target.glob("checkpoints/**/*.ckpt"))
            hint = f"; pass one of its checkpoints instead: {', '.join(found[:3])}" if found else ""
            raise EvaluationError(
                f"{target} holds no {MODEL_FILE} (a run saves it unless save_model=false; the "
                f"sweep, search and debug presets switch it off){hint}"
            )
        return run_dir, ckpt
    for parent in target.parents:
        if (parent / ".hydra" / "config.yaml").is_file():
            return parent, target
    raise EvaluationError(
        f"{target}: no run folder above it holds .hydra/config.yaml (the config the run saved), "
        "so the model cannot be rebuilt"
    )


def run_config(run_dir: Path, changes: list[str], recorded: dict | None = None):
    """The run's saved config with the evaluation settings, the data and encoder paths it ran
    with (``recorded``: its metrics.json settings) and the user's changes applied."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise EvaluationError(f"{path} is missing: the run's config is needed to rebuild it")
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, ValueError, yaml.YAMLError) as err:
        # YAML's messages span lines (the context, a caret): one line here
        raise EvaluationError(f"{path} could not be read: {' '.join(str(err).split())}") from None
    # a run saved in an earlier layout (the encoder and objective at the top) is read in today's
    if OmegaConf.is_dict(cfg):
        cfg = OmegaConf.create(upgrade_settings(OmegaConf.to_container(cfg, resolve=False)))
        split = OmegaConf.select(cfg, "data.split_seed", default=None)
        if old_split_seed(split) != split:
            # a DG run of before 0.4 with a permutation seed of its own: its test images come
            # from its split seed alone (tested in order, the permutation set plays no part)
            cfg.data.split_seed = old_split_seed(split)
    recorded = upgrade_settings(recorded) if recorded else recorded
    cfg = OmegaConf.merge(cfg, _EVALUATION, {"paths": {"run_dir": str(run_dir)}})
    cfg.logger, cfg.callbacks = {}, {}  # replaced, not merged into the run's own
    for key in _PINNED:
        value = OmegaConf.select(OmegaConf.create(recorded or {}), key, default=None)
        if value is not None and OmegaConf.select(cfg, key, default=None) is not None:
            OmegaConf.update(cfg, key, value, merge=False)
    for change in map(expand_short_form, changes):  # encoder.dropout=0 as train.py reads it
        key, sep, _ = change.partition("=")
        if not sep or not key:
            raise EvaluationError(f"{change!r}: expected key=value with a key of the run's config")
        old = OmegaConf.select(cfg, key, default=_MISSING)
        if old is _MISSING:
            raise EvaluationError(f"{key}: the run's config ({path}) has no such key")
        if OmegaConf.is_dict(old):
            # a group choice (trainer=gpu) needs Hydra's composition: values are changed here
            raise EvaluationError(
                f"{change}: only values of the saved config can be changed "
                f"(e.g. {key}.<field>=...), not a whole config group"
            )
        try:
            value = OmegaConf.select(OmegaConf.from_dotlist([change]), key)
            OmegaConf.update(cfg, key, value, merge=False)
        except OmegaConfBaseException as err:
            raise EvaluationError(f"{change}: {err}") from None
    return cfg


_MISSING = object()


def evaluate(
    target: Path, changes: list[str], out: Path | None = None, trusted: tuple[str, ...] = ()
) -> dict:
    """Rebuild the run, test the checkpoint, write and return the evaluation record. The saved
    config's ``_target_`` keys are checked first (``trust.check_config_targets``): only what the
    package's configs build, optimizer classes and the ``trusted`` targets are instantiated."""
    import lightning as L
    from lightning.pytorch.utilities.model_helpers import is_overridden

    from moo_lightning.cli.build import build
    from moo_lightning.cli.errors import BadSetting
    from moo_lightning.cli.naming import register_resolvers, settings
    from moo_lightning.records import check_checkpoint

    start = time.perf_counter()
    register_resolvers()  # the saved config keeps its interpolations (few_shot_budget, ...)
    run_dir, ckpt = find_run(target)
    destination = out or run_dir / "evaluation.json"
    check_destination(destination)  # before the test runs, not after
    recorded = RunRecord.find(run_dir) or RunRecord()
    cfg = run_config(run_dir, changes, recorded.settings)
    try:  # before anything is built: a shared folder's config is data, not code
        cfg = checked_config(cfg, str(run_dir / ".hydra" / "config.yaml"), trusted)
    except UntrustedConfig as err:
        raise EvaluationError(str(err)) from None
    # what this evaluation runs with that the run did not (the user's changes, or a setting
    # that resolves differently here): the recorded test metrics are compared only without
    if recorded.settings is not None:
        current = settings(cfg)
        for key in _EVALUATION["trainer"]:  # the evaluation's own: they change no test result
            current.get("trainer", {}).pop(key, None)
        differences = settings_differences(recorded.settings, current)
    else:
        differences = ["(the run recorded no settings)"]
    try:
        check_checkpoint(str(ckpt))
    except (ValueError, FileNotFoundError) as err:
        raise EvaluationError(str(err)) from None
    check_provenance(run_dir, ckpt, recorded)
    try:
        job = build(cfg, run_dir, {}, start)
    except BadSetting as err:
        raise EvaluationError(str(err)) from None
    if not (
        isinstance(job.data, L.LightningDataModule) and is_overridden("test_dataloader", job.data)
    ):
        raise EvaluationError(f"task={cfg.get('task_name')} has no test split to evaluate")
    check_fits(ckpt, job.module, run_dir)
    # weights_only: the checkpoint is read as tensors and plain containers, never as code
    results = job.trainer.test(
        job.module, datamodule=job.data, ckpt_path=str(ckpt), weights_only=True, verbose=False
    )
    metrics = {k: scalar(v) for k, v in (results[0] if results else {}).items()}
    metrics.update(job.module.test_results())  # per-member results of a set, ...
    record = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt),
        "checkpoint_sha256": file_sha256(ckpt),
        "changes": list(changes),
        "differences_from_run": differences,
        "metrics": metrics,
        "wall_time_s": time.perf_counter() - start,
    }
    if not differences:
        # the same weights on the same data: the recorded test metrics should come back
        same = {k: _close(v, recorded.get(k)) for k, v in metrics.items() if k in recorded}
        record["reproduces_recorded"] = same
    if job.trainer.is_global_zero:
        try:
            write_json_atomic(destination, record)
        except OSError as err:
            raise EvaluationError(
                f"{destination}: the record could not be written ({err.strerror or err}); "
                f"the test metrics were {metrics}"
            ) from None
    return record


def check_destination(path: Path) -> None:
    """Where the record goes must be a file path in a folder this process can write to: tried
    before the model is rebuilt and tested, so a bad --out (or a read-only run folder) costs a
    line, not a test."""
    import tempfile

    if path.is_dir():
        raise EvaluationError(f"--out {path} is a folder; give a file path (e.g. {path}/eval.json)")
    if not path.parent.is_dir():
        raise EvaluationError(
            f"--out {path}: the folder {path.parent} does not exist; make it first or give "
            "another path"
        )
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise EvaluationError(
            f"{path.parent} is not writable ({err.strerror or err}), so {path.name} cannot be "
            "written there; give --out FILE in a folder you can write to"
        ) from None


def check_provenance(run_dir: Path, ckpt: Path, recorded: RunRecord) -> None:
    """The run's model.ckpt must be the model the run saved: metrics.json records its SHA-256
    (``model_sha256``). The checksum file beside a checkpoint guards against damage, not
    against a model copied in from another run with its own checksum file."""
    expected = recorded.get("model_sha256")
    if ckpt != run_dir / MODEL_FILE or not isinstance(expected, str):
        return
    found = file_sha256(ckpt)
    if found != expected:
        raise EvaluationError(
            f"{ckpt} is not the model this run saved: its metrics.json records SHA-256 "
            f"{expected[:12]}…, the file has {found[:12]}… (replaced, or copied from another "
            "run); not evaluated"
        )


def check_fits(ckpt: Path, module, run_dir: Path) -> None:
    """The checkpoint's tensors must have the shapes of the model rebuilt from the run's
    config (another encoder size, say, would fail inside the state-dict load)."""
    import torch

    state = torch.load(str(ckpt), map_location="cpu", weights_only=True, mmap=True)
    saved = state.get("state_dict", {}) if isinstance(state, dict) else {}
    wanted = module.state_dict()
    wrong = [
        f"{k}: {tuple(saved[k].shape)} in the checkpoint, {tuple(v.shape)} in the model"
        for k, v in wanted.items()
        if k in saved and hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in wanted if k not in saved]
    if wrong or (missing and getattr(module, "strict_loading", True)):
        first = wrong[0] if wrong else f"{missing[0]} is not in the checkpoint"
        count = len(wrong) + len(missing)
        raise EvaluationError(
            f"{ckpt} does not fit the model rebuilt from {run_dir / '.hydra' / 'config.yaml'} "
            f"and the changes given ({count} tensor(s) differ; first: {first}): it was made "
            "with other settings (encoder size, task, ...); evaluate it with the settings that "
            "made it"
        )


def _close(a, b) -> bool:
    """Equal up to round-off: numbers, or lists (of lists) of numbers of the same shape."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return numbers and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="moo-evaluate",
        description="Test a run's saved model again (its folder's model.ckpt, or a checkpoint "
        "file inside a run folder), rebuilt from the config the run saved.",
    )
    parser.add_argument("run", type=Path, help="a run folder, or a checkpoint file inside one")
    parser.add_argument(
        "changes", nargs="*", help="key=value changes to the run's config (e.g. data.path=...)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the record (default: RUN/evaluation.json)",
    )
    parser.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="TARGET",
        help="a _target_ of your own that the run's config may build (e.g. a criterion you "
        "wrote: --trust my_pkg.my_criterion); without it only the package's own classes are built",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        record = evaluate(args.run, args.changes, args.out, tuple(args.trust))
    except EvaluationError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)  # one line, always
        return 2
    heads = " · ".join(f"{k} {v:.4g}" for k, v in record["metrics"].items() if isinstance(v, float))
    lines = [f"== evaluated: {record['checkpoint']}", f"   {heads or 'no test metrics'}"]
    same = record.get("reproduces_recorded")
    if same:
        lines.append(
            "   recorded test metrics "
            + (
                "reproduced"
                if all(same.values())
                else "NOT reproduced: " + ", ".join(k for k, v in same.items() if not v)
            )
        )
    written = args.out or Path(record["run_dir"]) / "evaluation.json"
    lines.append(f"   {record['wall_time_s']:.1f} s · {written}")
    print("\n".join(lines))
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
