"""A run's record, ``metrics.json``: one schema that every writer and reader goes through.

The command line fills the fields every run has (status, combiner, preference, seed, steps,
counters, world size, precision, timings, logs, settings); the logged validation and test metrics
come from the trainer; the task adds what only it knows through ``task_metrics`` (its module's
``export()``), which cannot replace a field. On disk the record stays one flat strict-JSON object,
written atomically; a record in an older layout reads through ``upgrade``, the one place that
knows those layouts. Nothing here imports torch, Lightning or a task: the report scripts read
records without them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

from moo_lightning.errors import RunFolderUnwritable

# the statuses a finished job can have; only "ok" carries headline metrics
STATUSES = ("ok", "diverged", "solver_failed", "no_steps", "no_validation")
RECORD_FILE = "metrics.json"


def strict_json(value):
    """``value`` with every non-finite float replaced by None (strict JSON has no NaN/inf)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def scalar(value):
    """A logged metric as a plain number (tensors have .item())."""
    return float(value.item()) if hasattr(value, "item") else value


def write_json_atomic(path: Path, value) -> None:
    """Write strict JSON to a unique temporary file beside ``path`` and rename it into place:
    readers see the old file or the new one, never half of one, even with concurrent writers."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as an ordinary file would be (mkstemp makes it 0600)
        with os.fdopen(fd, "w") as f:
            json.dump(strict_json(value), f, indent=2, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not strict JSON")


def upgrade(raw: dict) -> dict:
    """A metrics.json object of any earlier layout in today's layout (a new dict):

    - ``combiner_used`` named the combiner that ran before ``combiner`` did;
    - before 0.2, ``model`` was the encoder's name (today ``encoder``; ``model`` is the saved
      model file, ``model.ckpt``);
    - records written before runs had a status all had a result (status ``ok``).
    """
    if not isinstance(raw, dict):
        raise ValueError("metrics.json is not a JSON object")
    m = dict(raw)
    used = m.pop("combiner_used", None)
    if used:
        m["combiner"] = used
    model = m.get("model")
    if "encoder" not in m and isinstance(model, str) and not model.endswith(".ckpt"):
        m["encoder"] = m.pop("model")
    m.setdefault("status", "ok")
    return m


# The text module's own config groups and the short names users type and read for them
# (encoder=minilm is module/encoder, objective.lam the key module.objective.lam); until 0.3 they
# were top-level groups, and records of that time hold them at the top.
SHORT_FORMS = {"encoder": "module", "objective": "module"}


def short_name(key: str) -> str:
    """A config key or group under its short name: ``module/encoder`` → ``encoder``,
    ``module.objective.lam`` → ``objective.lam``; any other key unchanged."""
    for name, parent in SHORT_FORMS.items():
        for sep in ("/", "."):
            full = f"{parent}{sep}{name}"
            if key == full or key.startswith(full + "."):
                return name + key[len(full) :]
    return key


# Data keys renamed in 0.4 so that one concept has one key in every task, by the data class
# (the last part of data._target_): validation size, and the seed of what every trial shares.
_DATA_RENAMES = {
    "MultiMNIST": {"num_val": "val_size", "seed": "split_seed"},
    "RotatedMNIST": {"val_fraction": "val_size"},
    "PACS": {"val_fraction": "val_size"},
}
_NO_DATA = ("ToySteps", "Toy2DSteps")  # their data.steps is trainer.max_steps since 0.4
_APART = " (with permutation_seed {}, before 0.4)"


def old_split_seed(value):
    """The split seed of a domain-generalisation run recorded before 0.4 with a permutation
    seed of its own (upgrade_settings marks it with a text); any other value unchanged."""
    if isinstance(value, str) and value.endswith(", before 0.4)") and " (with " in value:
        head = value.partition(" (with ")[0]
        if head.isdigit():
            return int(head)
    return value


def _upgrade_data_keys(out: dict) -> None:
    data = out.get("data")
    if not isinstance(data, dict):
        return
    data = dict(data)
    kind = str(data.get("_target_") or "").rsplit(".", 1)[-1]
    for old, new in _DATA_RENAMES.get(kind, {}).items():
        if old in data and new not in data:
            data[new] = data.pop(old)
    if kind in ("RotatedMNIST", "PACS") and "permutation_seed" in data:
        # the permutation set now comes from split_seed: a run whose two seeds differed cannot
        # be made today, so its split_seed becomes a text that differs from every new run's
        # and says why (old_split_seed reads the number back)
        permutation_seed = data.pop("permutation_seed")
        split_seed = data.get("split_seed", 0)
        if permutation_seed != split_seed:
            data["split_seed"] = f"{split_seed}{_APART.format(permutation_seed)}"
    if kind in _NO_DATA and "steps" in data:
        steps = data.pop("steps")
        trainer = dict(out.get("trainer") or {})
        epochs, limit = trainer.get("max_epochs"), trainer.get("max_steps")
        ran = steps * epochs if isinstance(epochs, int) and epochs >= 1 else steps
        trainer["max_steps"] = ran if not isinstance(limit, int) or limit < 0 else min(ran, limit)
        out["trainer"] = trainer
    out["data"] = data


# modules whose configs name gradient_scope since the shared scope (it was 'all' before)
_SCOPE_NAMED_LATER = ("MultiMNISTSet", "JigsawModule")


def upgrade_settings(tree: dict) -> dict:
    """A run's settings or saved config (nested) of any earlier layout in today's (a new dict):

    - before 0.2 the encoder group was called ``model``;
    - before 0.3 ``encoder`` and ``objective`` were top-level groups (null for tasks without a
      text module) and the module's objective was a copy of ``${objective}``: both now live
      inside ``module``;
    - before 0.4 the validation size was ``data.num_val`` (Multi-MNIST) or
      ``data.val_fraction`` (domain generalisation), Multi-MNIST's composition seed
      ``data.seed`` and the jigsaw permutations' ``data.permutation_seed`` (now both
      ``data.split_seed``), the toys' budget ``data.steps`` (now ``trainer.max_steps``), and
      the table label ``module.method`` (now the top-level ``method``, a label, not a
      setting: dropped here);
    - the Multi-MNIST and JiGen modules' configs named no ``gradient_scope`` before the
      ``shared`` scope came: it was ``all``, which is filled in (so old and new runs of one
      setting are averaged together).
    """
    out = dict(tree)
    _upgrade_data_keys(out)
    if "model" in out and "encoder" not in out and isinstance(out["model"], dict | type(None)):
        out["encoder"] = out.pop("model")
    module = out.get("module")
    for name in reversed(SHORT_FORMS):  # first in the module, in today's order
        if name not in out:
            continue
        value = out.pop(name)
        if isinstance(value, dict):
            module = module if isinstance(module, dict) else {}
            if isinstance(module.get(name), dict):  # the module had a copy already
                value = module[name]
            module = {name: value, **{k: v for k, v in module.items() if k != name}}
    if isinstance(module, dict) and "method" in module:
        module = {k: v for k, v in module.items() if k != "method"}
    if (
        isinstance(module, dict)
        and "gradient_scope" not in module
        and str(module.get("_target_", "")).rpartition(".")[2] in _SCOPE_NAMED_LATER
    ):
        module = {**module, "gradient_scope": "all"}
    if module is not None:
        out["module"] = module
    return out


@dataclass
class RunRecord:
    """What one finished job leaves in its folder; ``to_json`` / ``from_json`` map it to the flat
    metrics.json object (fields in this order, then the logged metrics and the task's)."""

    task: str | None = None
    status: str = "ok"
    choices: dict = field(default_factory=dict)  # the config-group options of the run
    num_train: int | None = None  # data.num_train as configured (its meaning is the task's)
    combiner: str | None = None  # the combiner that ran
    method: str | None = None  # the run's label in tables (the `method` label, else what ran)
    seed: int | None = None
    # the one preference every model followed (module.recorded_preference); None: none
    preference: list[float] | None = None
    steps: int | None = None  # optimizer steps (trainer.global_step)
    combiner_fallbacks: int | None = None
    combiner_recoveries: int | None = None
    skipped_steps: int | None = None
    stopped_early: dict | None = None  # early stopping's verdict, when it ended the run
    world_size: int | None = None
    precision: str | None = None
    ddp_equals_one_process: bool | None = None  # written for DDP runs only
    val: dict = field(default_factory=dict)  # logged validation metrics (val/...)
    test: dict = field(default_factory=dict)  # what the test logged (test/...)
    status_reason: str | None = None  # why a run without a result has none
    model: str | None = None  # the tested weights' file in the run folder
    model_bytes: int | None = None
    model_sha256: str | None = None  # the saved model file's checksum (moo-evaluate checks it)
    task_metrics: dict = field(default_factory=dict)  # the task's own entries (export())
    logs: list[str] = field(default_factory=list)  # CSV logs, one per part of a resumed run
    timing_s: dict = field(default_factory=dict)
    cache_hits: dict = field(default_factory=dict)
    wall_time_s: float | None = None
    # the code that ran: package version, and the git commit (dirty: uncommitted changes to
    # tracked files) when it ran from a checkout; not a setting (a skip does not compare it)
    code: dict | None = None
    settings: dict | None = None  # what produced the result, compared before a skip
    complete: bool = False  # the job finished; status says whether it has a result

    def add_task_metrics(self, entries: dict) -> None:
        """The task's entries; a task cannot replace a field or a logged metric."""
        taken = sorted(k for k in entries if k in _FIELDS or k in self.val or k in self.test)
        if taken:
            raise ValueError(
                f"the task's record entries {taken} are the run record's own; a task adds "
                "entries of its own only (task_metrics)"
            )
        self.task_metrics.update(entries)

    def get(self, key: str, default=None):
        """An entry by its metrics.json key: a field, a logged metric or a task metric."""
        if key in _FIELDS and key not in _SECTIONS:
            value = getattr(self, key)
            return default if value is None and key in _OPTIONAL else value
        for section in (self.val, self.test, self.task_metrics):
            if key in section:
                return section[key]
        return default

    def __contains__(self, key: str) -> bool:
        return self.get(key, _ABSENT) is not _ABSENT

    def metric(self, key: str | None):
        """The optimised metric (``optimized_metric``) of a run with a result; None otherwise."""
        if not key or self.status != "ok":
            return None
        return self.get(key)

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECTIONS:
                out.update(value)
            elif not (value is None and f.name in _OPTIONAL):
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, raw: dict) -> RunRecord:
        """A record from a metrics.json object of any layout (``upgrade``): the fields by name,
        ``val/...`` and ``test/...`` as logged metrics, everything else the task's."""
        m = upgrade(raw)
        known = {k: m[k] for k in _FIELDS if k in m and k not in _SECTIONS}
        rest = {k: v for k, v in m.items() if k not in _FIELDS}
        return cls(
            **known,
            val={k: v for k, v in rest.items() if k.startswith("val/")},
            test={k: v for k, v in rest.items() if k.startswith("test/")},
            task_metrics={k: v for k, v in rest.items() if not k.startswith(("val/", "test/"))},
        )

    @classmethod
    def read(cls, path: Path, strict: bool = True) -> RunRecord:
        """The record in ``path`` (a metrics.json or the run folder holding one). OSError when it
        cannot be read, ValueError when it is not JSON (``strict``: strict JSON, without NaN or
        Infinity, as runs write it) or not an object."""
        path = Path(path)
        if path.is_dir():
            path = path / RECORD_FILE
        constant = {"parse_constant": _refuse_constant} if strict else {}
        return cls.from_json(json.loads(path.read_text(), **constant))

    @classmethod
    def find(cls, folder: Path) -> RunRecord | None:
        """The folder's record, or None when it has none (or an unreadable one); a record with a
        NaN written by hand is still the folder's (never taken for an empty folder)."""
        try:
            return cls.read(Path(folder) / RECORD_FILE, strict=False)
        except (OSError, ValueError):
            return None

    def write(self, folder: Path) -> None:
        """Into ``folder``/metrics.json, atomically (strict JSON: NaN and inf become null).
        When the folder cannot be written (made read-only, a full disk) the record goes to a
        temporary file instead and the error names it: a finished run's result is never lost."""
        path = Path(folder) / RECORD_FILE
        try:
            write_json_atomic(path, self.to_json())
        except OSError as err:
            text = json.dumps(strict_json(self.to_json()), indent=2, allow_nan=False)
            try:
                fd, spare = tempfile.mkstemp(prefix="moo-lightning-metrics-", suffix=".json")
                with os.fdopen(fd, "w") as f:
                    f.write(text)
            except OSError as again:  # no room anywhere: the record goes into the message
                raise RunFolderUnwritable(
                    f"{path} could not be written ({err.strerror or err}), nor a temporary copy "
                    f"({again.strerror or again}); the run's record: {' '.join(text.split())}"
                ) from None
            raise RunFolderUnwritable(
                f"{path} could not be written ({err.strerror or err}): the run's record is in "
                f"{spare} (status {self.status}); copy it into the run folder once the folder "
                "is writable"
            ) from None


_ABSENT = object()
_SECTIONS = ("val", "test", "task_metrics")  # written flat, key by key
# left out of metrics.json when None (they exist for some runs only)
_OPTIONAL = (
    "ddp_equals_one_process",
    "status_reason",
    "model",
    "model_bytes",
    "model_sha256",
    "code",
)
_FIELDS = frozenset(f.name for f in fields(RunRecord))
