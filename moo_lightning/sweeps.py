"""The runs of a sweep folder and the statistics the report scripts share (``sweep/*.py``).

``load_runs`` reads every ``metrics.json`` under a folder through ``RunRecord`` and applies one
set of rules for what is left out, each named in a (folder, why) list:

1. unreadable: not JSON or not an object (``NaN``/``Infinity`` tokens read as numbers: a
   non-finite value in a field a table uses is refused by the table's own check, naming the
   field);
2. incomplete: ``complete`` is not set (the job did not finish);
3. no result: ``status`` other than ``ok`` (diverged, no steps, never validated), with its reason;
4. another task, when the caller names its tasks;
5. a seed that is not an integer;
6. what the caller's ``parse`` refuses: the fields its table needs, missing or malformed;
7. a duplicate: the same identity (what the caller says tells runs apart besides settings: the
   loss and preference of a text run, the method of an ensemble), the same settings but the
   trial, and the same seed as a run earlier in path order, which is kept.

A job folder (one holding Hydra's ``.hydra/config.yaml``) without a metrics.json is listed too:
the job is still running, or it stopped (killed, crashed) before writing its record; the last
line of its log that names an error is given with it.

A run's settings are those recorded in metrics.json, or for runs written before they were
recorded there the run's ``.hydra/config.yaml``, or none (``{}``); runs on other numbers of
processes or at another precision take other steps, so a ``run`` section
(``world_size``, ``precision``) joins the settings where they are not the one-process, 32-bit
defaults: such runs are other settings, never duplicates. "Settings but the trial"
(``trial_free``) drops the top-level ``seed`` and every nested ``seed`` that follows it
(``data.seed: ${seed}``); a nested seed the run's config fixes (``data.seed=7``, even in the run
of seed 7: read from ``.hydra/config.yaml``) is a real setting.

Statistics: means and standard deviations use ddof = 1 (``mean_std``); ``paired_p`` is the one
paired test between two methods over the seeds (or other trial labels) both have,
``paired_difference`` the mean paired difference with its t confidence interval, ``adjusted_p``
the Benjamini–Hochberg adjustment over a family of tests.

Nothing here imports Hydra, torch or a task: numpy, scipy and PyYAML only.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

from moo_lightning.record import RECORD_FILE, RunRecord, upgrade_settings

LOSS_NAMES = {"ce": "CE", "ce_scl": "CE+SCL"}
# the reasons that say a record is not one of the caller's runs or repeats a kept one (scripts
# that show every other reason as "without a result" tell these apart by their start)
OTHER_TASK = "not a "
DUPLICATE = "duplicate of "


@dataclass(frozen=True)
class Run:
    """One kept run: its folder (relative to the sweep folder; "." for the folder itself), the
    folder's path, its record, its settings (see the module) and what ``parse`` returned."""

    folder: str
    path: Path
    record: RunRecord
    settings: dict
    fields: Any = None

    @property
    def seed(self) -> int:
        return int(self.record.seed)

    @property
    def group(self) -> str:
        """The settings but the trial, as text: runs are averaged only when this matches."""
        return trial_key(self.settings, self.record.seed)


def loss_name(record: RunRecord) -> str:
    """A text run's loss as the tables name it: CE, CE+SCL or CE+<COMBINER>; older records
    said ``combiner_used`` (``RunRecord`` reads it as ``combiner``)."""
    objective = record.get("objective")
    if objective in LOSS_NAMES:
        return LOSS_NAMES[objective]
    return f"CE+{str(record.combiner).upper()}"


def is_number(value) -> bool:
    """A finite int or float (never a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def trial_free(settings: dict, seed) -> dict:
    """``settings`` without the trial: the top-level ``seed`` and nested ``seed`` keys equal to
    ``seed`` (an integer) or to the text ``${seed}`` (a config read unresolved); a nested seed
    fixed to another value, or fixed in the run's config (``run_settings``: as text), stays, as
    a setting."""

    def strip(tree):
        if not isinstance(tree, dict):
            return tree
        return {
            k: strip(v)
            for k, v in tree.items()
            if not (k == "seed" and ((type(v) is int and v == seed) or v == "${seed}"))
        }

    return strip({k: v for k, v in settings.items() if k != "seed"})


def trial_key(settings: dict, seed) -> str:
    """``trial_free(settings, seed)`` as text (sorted JSON): equal for runs that differ only in
    their trial."""
    return json.dumps(trial_free(settings, seed), sort_keys=True, default=str)


def _fixed_seeds_as_text(settings: dict, raw: dict) -> dict:
    """A nested ``seed`` the run's own config set to a number (``data.seed=7``, not the default
    ``${seed}``) as text ("7"): a setting even in the run whose trial seed is that number, which
    ``trial_free`` would otherwise take for the trial. Without the config the rule is equality."""

    def walk(tree, config, top):
        if not isinstance(tree, dict) or not isinstance(config, dict):
            return tree
        out = {}
        for k, v in tree.items():
            c = config.get(k)
            if not top and k == "seed" and type(v) is int and type(c) is int:
                out[k] = str(v)
            else:
                out[k] = walk(v, c, False)
        return out

    return walk(settings, raw, True)


def run_settings(record: RunRecord, folder: Path) -> dict:
    """What produced the run (see the module): recorded settings, else ``.hydra/config.yaml``,
    else ``{}``; with a ``run`` section where world size or precision are not the defaults."""
    path = folder / ".hydra" / "config.yaml"
    raw = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    settings = record.settings
    if settings is None:  # runs written before settings were recorded in metrics.json
        settings = raw
    settings = upgrade_settings(settings)  # one layout, whichever version wrote the run
    settings = _fixed_seeds_as_text(settings, raw)
    run = {"world_size": record.world_size or 1, "precision": record.precision or "32-true"}
    run = {k: v for k, v in run.items() if v not in (1, "32-true")}
    return {**settings, "run": run} if run else settings


def _why_not(record: RunRecord, tasks: tuple[str, ...] | None) -> str | None:
    """Rules 2 to 5 of the module, in that order: why ``record`` is left out, or None."""
    if not record.complete:
        return "incomplete (the job did not finish)"
    if record.status != "ok":
        reason = record.status_reason or ""
        return f"status {record.status}: {reason}" if reason else f"status {record.status}"
    if tasks is not None and record.task not in tasks:
        return f"{OTHER_TASK}{' or '.join(tasks)} run (task {record.task!r})"
    seed = record.seed
    if not (is_number(seed) and float(seed).is_integer()):
        return f"seed {seed!r} is not an integer"
    return None


def load_runs(
    sweep_dir: Path,
    parse: Callable[[RunRecord], Any] | None = None,
    *,
    tasks: str | Iterable[str] | None = None,
    identity: Callable[[RunRecord, Any], Hashable] | None = None,
    same: str = "settings",
) -> tuple[list[Run], list[tuple[str, str]]]:
    """The kept runs under ``sweep_dir`` (every metrics.json, in path order) and (folder, why)
    for each record left out, by the module's rules.

    ``parse(record)`` returns the fields the caller's table needs (``Run.fields``) or raises
    ValueError saying what is missing or malformed; ``tasks`` the task (or tasks) the caller
    reads; ``identity(record, fields)`` what tells runs apart besides their settings (for
    duplicates); ``same`` how a duplicate's reason names that ("settings", "method, settings").
    """
    sweep_dir = Path(sweep_dir)
    if isinstance(tasks, str):
        tasks = (tasks,)
    elif tasks is not None:
        tasks = tuple(tasks)
    runs, left_out, seen = [], [], {}
    for folder in sorted(no_record(sweep_dir)):
        why = f"{NO_RECORD} (still running, or stopped before writing its record)"
        error = last_error(folder)
        left_out.append((str(folder.relative_to(sweep_dir)), why + (f"; {error}" if error else "")))
    for path in sorted(sweep_dir.rglob(RECORD_FILE)):
        where = str(path.parent.relative_to(sweep_dir))
        try:
            record = RunRecord.read(path, strict=False)
        except (OSError, ValueError) as err:
            left_out.append((where, f"unreadable metrics.json ({type(err).__name__}: {err})"))
            continue
        why = _why_not(record, tasks)
        if why is None:
            try:
                fields = parse(record) if parse is not None else None
            except ValueError as err:
                why = str(err)
        if why is not None:
            left_out.append((where, why))
            continue
        settings = run_settings(record, path.parent)
        who = identity(record, fields) if identity is not None else None
        key = (who, trial_key(settings, record.seed), record.seed)
        if key in seen:
            left_out.append((where, f"{DUPLICATE}{seen[key]} (same {same} and seed)"))
            continue
        seen[key] = where
        runs.append(Run(where, path.parent, record, settings, fields))
    return runs, left_out


NO_RECORD = "no metrics.json"  # the start of the reason a job folder without a record is listed


def no_record(sweep_dir: Path) -> list[Path]:
    """The job folders under ``sweep_dir`` (itself included) that hold Hydra's
    ``.hydra/config.yaml`` but no metrics.json."""
    return [
        hydra.parent.parent
        for hydra in Path(sweep_dir).rglob(".hydra/config.yaml")
        if not (hydra.parent.parent / RECORD_FILE).exists()
    ]


def last_error(folder: Path) -> str | None:
    """The last line naming an error in the folder's logs (``*.log``; its last 160 characters),
    or None: why a job that wrote no record stopped."""
    for log in sorted(Path(folder).glob("*.log")):
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        errors = [ln.strip() for ln in lines if "error" in ln.lower()]
        if errors:
            return errors[-1][-160:]
    return None


def seed_list(text: str) -> tuple[int, ...]:
    """Seeds as a command line names them: ``0-9``, ``0,1,5`` or ``0-4,7`` → the sorted seeds;
    ValueError naming the forms allowed."""
    seeds: set[int] = set()
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise ValueError(
                f"{text!r}: expected seeds such as 0-9, 0,1,5 or 0-4,7 (whole numbers, ranges "
                "low-high)"
            )
        seeds.update(range(int(m[1]), int(m[2] if m[2] is not None else m[1]) + 1))
    return tuple(sorted(seeds))


def seeds_argument(text: str) -> tuple[int, ...]:
    """:func:`seed_list` as an argparse ``type=`` (``--seeds 0-9`` of the ``sweep/`` scripts): a
    bad value is refused as argparse refuses one, naming the option and the forms allowed."""
    import argparse

    try:
        return seed_list(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def seed_text(seeds) -> str:
    """Seeds as ``seed_list`` reads them: 0-9 for a run of consecutive seeds, else 0, 2, 5."""
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def code_label(record: RunRecord) -> str:
    """The code a run was made with (``RunRecord.code``), as text: the commit's first ten
    characters, with ``+changes`` when the checkout had uncommitted changes to tracked files;
    else the package version; "not recorded" for runs written before records named their code."""
    code = record.code or {}
    if code.get("commit"):
        return str(code["commit"])[:10] + (" +changes" if code.get("dirty") else "")
    if code.get("version"):
        return f"version {code['version']} (no git checkout)"
    return "not recorded"


def code_versions(labels: Iterable[str]) -> str:
    """One line: each code version (``code_label``) the runs were made with and its number of
    runs, and a warning when runs of several recorded versions are averaged together."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if not counts:
        return "Code: no runs."
    shown = ", ".join(
        f"{label} ({n} run{'s' if n > 1 else ''})" for label, n in sorted(counts.items())
    )
    several = [k for k in counts if k != "not recorded"]
    warn = " Runs of several code versions are averaged together." if len(several) > 1 else ""
    return f"Code: {shown}.{warn}"


def flatten(settings: dict) -> dict:
    """Nested settings as dotted keys (``{"optimizer": {"lr": 0.01}}`` → ``optimizer.lr``)."""
    flat = {}

    def walk(tree: dict, prefix: str) -> None:
        for k, v in tree.items():
            if isinstance(v, dict) and v:
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v

    walk(settings or {}, "")
    return flat


def settings_differences(a: dict, b: dict) -> list[str]:
    """Dotted settings whose values differ between ``a`` and ``b`` ('key: a → b'), including
    keys present on one side only (shown as absent there)."""
    fa, fb = flatten(a), flatten(b)

    def show(flat: dict, k: str) -> str:
        return repr(flat[k]) if k in flat else "(absent)"

    return [
        f"{k}: {show(fa, k)} → {show(fb, k)}"
        for k in sorted(fa.keys() | fb.keys())
        if k not in fa or k not in fb or fa[k] != fb[k]
    ]


def row_labels(rows: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, int]]:
    """A table row's label and variant for each (method, group): the method when it ran with one
    group of settings, else ``method [k]`` (k = 1, 2, ... in the order of the groups' text)."""
    out, by_method = {}, {}
    for method, group in sorted(set(rows)):
        by_method.setdefault(method, []).append(group)
    for method, groups in by_method.items():
        for k, group in enumerate(groups, start=1):
            out[(method, group)] = (method if len(groups) == 1 else f"{method} [{k}]", k)
    return out


# ---------------------------------------------------------------- statistics


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard deviation (ddof = 1, the sample's) of ``values``; the std is NaN for one
    value (no spread to estimate) and both are NaN for none."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def _pairs(x, y) -> list[tuple[float, float]]:
    """(x, y) for every label both have with a number on each side (a mapping or a pandas Series,
    labelled by seed or (target, seed)), in x's order."""
    ys = dict(y.items())
    out = []
    for label, a in x.items():
        b = ys.get(label)
        if a is None or b is None:
            continue
        a, b = float(a), float(b)
        if not (math.isnan(a) or math.isnan(b)):
            out.append((a, b))
    return out


def paired_p(x, y) -> float | None:
    """Two-sided paired t-test (``scipy.stats.ttest_rel``) of ``x`` against ``y`` on the labels
    (seeds, or (target, seed)) both have with a value; None with fewer than 2 pairs; 1.0 when
    every paired difference is exactly zero (t is 0/0 there, so scipy gives NaN).

    The one rule of the scripts. Before, ``sweep/report.py`` gave 1.0 when the pairs were equal
    within ``np.allclose`` (a relative 1e-5), ``sweep/dg_report.py`` None when every difference
    was the same (within ``np.allclose``), and ``sweep/pareto_report.py`` 1.0 on exact equality
    only, the rule its table notes state. Exact equality is kept: the tolerance would call two
    methods equal whose per-seed hypervolumes differ in the sixth digit, a real difference
    between different models; identical models give identical numbers, so a tie is exact. A
    constant nonzero difference gets scipy's limit, p = 0.0 (t is infinite).
    """
    pairs = _pairs(x, y)
    if len(pairs) < 2:
        return None
    a, b = (np.array(side) for side in zip(*pairs))
    if np.array_equal(a, b):
        return 1.0
    with warnings.catch_warnings():
        # a constant or near-constant difference: scipy's division or precision notice
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(a, b).pvalue)


def paired_difference(x, y, confidence: float = 0.95) -> tuple[float, float, float] | None:
    """The mean of ``x − y`` over the labels both have, with its two-sided t confidence interval
    (``scipy.stats.ttest_rel(...).confidence_interval``): (mean, low, high); None with fewer than
    2 pairs. Every difference equal: the interval is that one value."""
    pairs = _pairs(x, y)
    if len(pairs) < 2:
        return None
    a, b = (np.array(side) for side in zip(*pairs))
    d = a - b
    if np.all(d == d[0]):
        return float(d[0]), float(d[0]), float(d[0])
    ci = stats.ttest_rel(a, b).confidence_interval(confidence)
    return float(d.mean()), float(ci.low), float(ci.high)


def adjusted_p(ps) -> list[float | None]:
    """Benjamini–Hochberg adjusted p-values (q; ``scipy.stats.false_discovery_control``) over
    the family of the given p-values that are not None or NaN, in the given order; those stay
    None. Among the comparisons with q < α, the expected share of false discoveries is at most
    α (for independent or positively dependent tests)."""
    values = [None if p is None or not np.isfinite(p) else float(p) for p in ps]
    family = [p for p in values if p is not None]
    if not family:
        return values
    q = iter(stats.false_discovery_control(family, method="bh").tolist())
    return [None if p is None else next(q) for p in values]
