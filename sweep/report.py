"""Aggregate a sweep into the seed paper's Table 1, a per-run CSV and figures.

    python sweep/report.py MULTIRUN_DIR --out OUT_DIR [--reference CSV] [--seeds 0-9]
                           [--baseline LOSS] [--wandb [--project P] [--entity E]]

Rows: for every (task, N, loss) the hyperparameters (τ, λ, preference) with the best mean
validation accuracy over seeds are chosen among the groups that have every seed (``--seeds``;
by default every seed any run of that task and N has); their test accuracy (mean ± sample std
over seeds) goes in the table, with a two-sided paired t-test against the chosen baseline (CE;
``--baseline CE+LS`` to compare combiners) on the same seeds, and its Benjamini–Hochberg
adjustment over every comparison of the table (q); a second table gives the mean paired
difference from the baseline with its 95% t interval. Groups missing seeds are listed as
incomplete and never averaged; runs left out (unreadable, unfinished, without a result,
malformed, duplicates, job folders without a metrics.json, seeds outside ``--seeds``: the rules
of ``moo_lightning.sweeps.load_runs``) are listed with the reason, and the code versions the runs
were made with are stated.

Settings: each run's ``settings`` in metrics.json (or, for runs written before they were recorded
there, its .hydra/config.yaml), nested sections flattened to dotted keys (``optimizer.lr``,
``encoder.name``). Runs are averaged only when every setting but the trial matches (the trial:
``seed`` and a nested seed that follows it, ``data.seed: ${seed}``, while one the runs fix,
``data.seed=7``, is a setting; ``moo_lightning.sweeps.trial_free``). A
setting the table does not show already (task, N and loss are shown;
τ, λ and preference are chosen by validation and given in table.csv) becomes a column of table.md,
table.csv and runs.csv when it differs between runs of one task (an objective or combiner
setting: between runs of one task and loss) or only some runs of one (task, N, loss) have it.
Rows are then chosen per value of those columns, so no two rows differ only in a hidden setting,
and p is against the CE row whose columns agree (where CE has no such setting, e.g. EPO's eps,
any value agrees). The other settings are stated once under the table: those the same in every
run ("All rows: lr=1e-05, ..."), then those set per loss ("Per loss: eps=0.0001 (CE+EPO); ...")
or per task ("Per task: path: /a (qnli), /b (sst2)"). table.md names a setting by the shortest
ending of its key that no other key shares (``lr``, ``encoder.name``), the CSV files by the whole
key.

--reference CSV puts published numbers beside each task's column (``<task> (here, <encoder>)``
and ``<task> (<source>)``; table.csv: reference_mean, reference_std, reference_source): one row per
(task, N, loss) cell, columns task, N, loss, mean, std, source (percent, std may be empty; lines
starting with # are comments). sweep/reference/moukafih2023_table1.csv holds the seed paper's.
table.md states the summed job time (``wall_time_s`` of every run read).

Writes OUT_DIR/table.md, table.csv, runs.csv, loss_space.png and (when runs saved test
embeddings, module.save_test_embeddings=true) tsne.png; a sweep of several (task, N) cells gets
one of each figure per cell, loss_space_<task>_N<N>.png and tsne_<task>_N<N>.png. Runs on the
whole training set (data.num_train=null) are N = all. Grouping,
selection and averages come from pandas, the paired t-test from scipy. --wandb also logs
Table 1 (a wandb.Table "table1"), the figures (images) and the report's files (an artifact of
type "report") to a W&B run of job type "report" (WANDB_MODE=offline: a local run in
OUT_DIR/wandb, `wandb sync` later).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

# the checkout's package, so that `python sweep/report.py` reads records as the runs wrote them
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moo_lightning import sweeps  # noqa: E402
from moo_lightning.record import RunRecord, short_name  # noqa: E402
from moo_lightning.sweeps import (  # noqa: E402
    adjusted_p,
    is_number,
    loss_name,
    paired_difference,
    paired_p,
    trial_free,
)

# the trial, never a column (a nested seed that follows it is gone already: trial_free; one
# the runs fix, ``data.seed=7``, is a setting like any other)
SEED_KEYS = ("seed",)
# settings the table shows already, as its task column, N and loss
SHOWN_KEYS = ("task_name", "data.task", "data.num_train", "objective._target_", "combiner._target_")
# the hyperparameters chosen by validation (τ, λ, preference): table.csv, never row keys
HYPER_KEY = re.compile(r"preference|objective\.(temperature|lam)")
# the per-run columns of runs.csv
RUN_COLUMNS = (
    "dir", "task", "N", "loss", "seed", "temperature", "lam", "r1", "val_acc_best", "test_acc",
    "l1", "l2", "skipped_steps", "wall_time_s", "setup_s", "fallbacks", "encoder", "code",
)  # fmt: skip
# a setting named like a column of the runs' table is called settings.<name> there
RESERVED = (*RUN_COLUMNS, "group", "settings", "gid")
HYPER = ["temperature", "lam", "r1"]


def _text(value) -> str:
    """A setting's value as text: strings as they are, anything else as JSON (1e-05, true, null,
    [0.1, 0.9]); the empty string as "" so that "" can mean "not set"."""
    if isinstance(value, str) and value:
        return value
    return json.dumps(value, default=str)


def flat_settings(settings: dict) -> dict[str, str]:
    """Nested settings as dotted keys (``{"optimizer": {"lr": 1e-05}}`` → ``optimizer.lr``) →
    their values as text; empty sections have no key. The text module's settings go by their
    short names (``objective.lam``, ``encoder.name``), as users type them."""
    flat = {}

    def walk(tree: dict, prefix: str) -> None:
        for k, v in tree.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[short_name(f"{prefix}{k}")] = _text(v)

    walk(settings, "")
    return flat


def text_fields(m: RunRecord) -> None:
    """Why a finished run's record cannot enter the table (ValueError; a hand edit, another
    tool's file): the validation and test accuracies must be there and finite numbers, the task
    a name (the seed, an integer, is checked by ``load_runs``)."""
    if "test/acc" not in m or "val/acc_best" not in m:
        raise ValueError("no validation/test accuracy (not a text-classification run)")
    if not isinstance(m.get("task"), str) or not m.get("task"):
        raise ValueError(f"no task recorded (task: {m.get('task')!r})")
    for key in ("val/acc_best", "test/acc"):
        value = m.get(key)
        if not is_number(value):
            raise ValueError(f"{key} {value!r} is not a finite number")


def load_runs(sweep_dir: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The runs with a result (one row each: the RUN_COLUMNS, the settings group and the
    flattened settings), and (folder, why) for every metrics.json left out (the rules of
    ``moo_lightning.sweeps.load_runs``: unreadable, incomplete, without a result, malformed, or
    a duplicate of a run with the same task, N, loss, preference, settings and seed)."""
    kept, left_out = sweeps.load_runs(
        sweep_dir,
        text_fields,
        identity=lambda m, _: (m.task, m.num_train, loss_name(m), str(m.preference)),
    )
    runs = []
    for run in kept:
        m, cfg = run.record, run.settings
        objective = (cfg.get("module") or {}).get("objective") or {}
        pref = m.preference or []
        losses = m.get("final_train_losses") or []
        runs.append(
            {
                "dir": run.folder,
                "task": m.task,
                "N": m.num_train,
                "loss": loss_name(m),
                "seed": m.seed,
                "temperature": objective.get("temperature"),
                "lam": objective.get("lam"),
                "r1": round(pref[0], 6) if len(pref) == 2 else None,
                "val_acc_best": m.get("val/acc_best"),
                "test_acc": m.get("test/acc"),
                "l1": losses[0] if len(losses) == 2 else None,
                "l2": losses[1] if len(losses) == 2 else None,
                "skipped_steps": m.skipped_steps,
                "wall_time_s": m.wall_time_s,
                "setup_s": (m.timing_s or {}).get("setup"),
                "fallbacks": m.combiner_fallbacks,
                "encoder": m.get("encoder"),
                "code": sweeps.code_label(m),
                "group": run.group,
                "settings": flat_settings(trial_free(cfg, m.seed)),
            }
        )
    # object columns keep each value as recorded (an int stays an int next to a missing value)
    frame = pd.DataFrame(runs, columns=[*RUN_COLUMNS, "group", "settings"], dtype=object)
    frame[["val_acc_best", "test_acc"]] = frame[["val_acc_best", "test_acc"]].astype(float)
    return frame, left_out


def settings_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One column per dotted setting, "" where a run does not have it; without the seed, the
    settings the table shows (task, N, loss)."""
    flat = pd.DataFrame(list(runs["settings"]), index=runs.index, dtype=object).fillna("")
    flat = flat.drop(columns=[k for k in flat if k in SEED_KEYS or k in SHOWN_KEYS])
    return flat.rename(columns={k: f"settings.{k}" for k in flat if k in RESERVED})


class Settings(NamedTuple):
    """What the sweep's settings say about the table (``describe_settings``); a setting's
    ``where``: each of its values with the losses (per_loss) or tasks (per_task) that have it."""

    keys: list[str]  # tell the rows apart: a column each
    constants: dict[str, str]  # one value in every run
    per_loss: dict[str, list[tuple[str, list[str]]]]  # set for some losses only, or per loss
    per_task: dict[str, list[tuple[str, list[str]]]]  # one value per task


def _of_loss(key: str) -> bool:
    """A setting of the objective or the combiner: the loss, with its own settings."""
    return key.split(".")[0] in ("objective", "combiner")


def describe_settings(runs: pd.DataFrame) -> Settings:
    """The row keys: the settings (but τ, λ and preference) whose values differ between runs of
    one task that have them (between runs of one task and loss, for the objective's and the
    combiner's own settings), or that some runs of one (task, N, loss) have and others not. Every
    other setting (τ, λ and preference only where they have one value) is a constant, set per
    loss (objective and combiner settings, and those only some losses have) or set per task."""
    flat = settings_table(runs)
    has = flat != ""
    cell = [runs["task"], runs["N"], runs["loss"]]

    def tells_rows_apart(k: str) -> bool:
        by = [runs["task"], runs["loss"]] if _of_loss(k) else [runs["task"]]
        differ = flat[k][has[k]].groupby([b[has[k]] for b in by]).nunique().gt(1).any()
        return differ or has[k].groupby(cell, dropna=False).nunique().gt(1).any()

    def where(k: str, by: str) -> list[tuple[str, list[str]]]:
        values = flat[k][has[k]]
        return [
            (v, sorted(runs[by][has[k]][values == v].unique()))
            for v in sorted(values.unique(), key=_order)
        ]

    keys = [k for k in flat if not HYPER_KEY.fullmatch(k) and tells_rows_apart(k)]
    out = Settings(keys, {}, {}, {})
    for k in flat:
        if k in keys or k.endswith("._partial_"):  # _partial_: how Hydra builds it, no setting
            continue
        one_value = flat[k][has[k]].nunique() == 1
        if one_value and has[k].all():
            out.constants[k] = flat[k].iloc[0]
        elif HYPER_KEY.fullmatch(k) and not one_value:
            continue  # swept τ, λ or preference: chosen by validation, in table.csv
        elif one_value or _of_loss(k):
            out.per_loss[k] = where(k, "loss")
        else:
            out.per_task[k] = where(k, "task")
    return out


def choose(
    runs: pd.DataFrame, keys: list[str], seeds: tuple[int, ...] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Runs grouped by everything but the seed (``gid``): the chosen groups, one per (task, N,
    loss, row keys), the complete group with the best mean validation accuracy (the first such
    group in folder order on a tie), with their test accuracy mean, std and seed count; the
    incomplete groups (seeds and expected seeds: ``seeds`` when given, else every seed any run
    of that task and N has); and each run's gid."""
    cell = ["task", "N", "loss", *keys]
    gid = runs.groupby([*cell, *HYPER, "group"], dropna=False, sort=False).ngroup()
    runs = runs.assign(gid=gid)
    first = runs.drop_duplicates("gid").set_index("gid")[[*cell, *HYPER]]
    agg = runs.groupby("gid").agg(
        seeds=("seed", lambda s: tuple(sorted(int(x) for x in s))),
        val_acc_mean=("val_acc_best", "mean"),
        test_acc_mean=("test_acc", "mean"),
        test_acc_std=("test_acc", "std"),
    )
    groups = first.join(agg)
    expected = runs.groupby(["task", "N"], dropna=False)["seed"].agg(
        lambda s: tuple(sorted(seeds if seeds is not None else {int(x) for x in s}))
    )
    groups = groups.join(expected.rename("expected"), on=["task", "N"])
    complete = groups["seeds"] == groups["expected"]
    full = groups[complete]
    # how many complete groups each row chose among (1: nothing was chosen)
    full = full.assign(candidates=full.groupby(cell, dropna=False)["seeds"].transform("size"))
    chosen = (
        full.sort_values("val_acc_mean", ascending=False, kind="stable")
        .drop_duplicates(cell)
        .sort_index()
    )
    return chosen, groups[~complete], gid


def baselines(chosen: pd.DataFrame, keys: list[str], baseline: str = "CE") -> pd.Series:
    """Each chosen group's baseline (its gid): the chosen group of loss ``baseline`` (CE, or
    CE+LS for a comparison of combiners) of the same task and N that agrees on every row key
    both have set (of several, the one with the row's value of every key in which they differ,
    e.g. the same fixed ``data.seed`` or none); none (NaN) for the baseline itself, without such
    a group, or with several."""
    ce = chosen[chosen["loss"] == baseline]
    out = {}
    for g, row in chosen[chosen["loss"] != baseline].iterrows():
        # N None (the whole training set) is a size too: None == None is False in pandas
        n = ce["N"].isna() if pd.isna(row["N"]) else ce["N"] == row["N"]
        same = ce[(ce["task"] == row["task"]) & n]
        for k in keys:
            if row[k] != "":
                same = same[same[k].isin([row[k], ""])]
        if len(same) > 1:  # several agree: the one that has the row's value of every key in
            # which they differ (a key only the row's loss has, e.g. EPO's solver, is no help)
            differ = [k for k in keys if same[k].nunique() > 1]
            exact = same[(same[differ] == row[differ]).all(axis=1)] if differ else same
            same = exact if len(exact) == 1 else same
        if len(same) == 1:
            out[g] = same.index[0]
    return pd.Series(out, index=chosen.index, dtype=float)


# rows and columns in the seed paper's order (CE, CE+SCL, then the two-objective losses; SST-2,
# QNLI, MNLI), others after them in alphabetical order
LOSS_ORDER = ("CE", "CE+SCL", "CE+LS", "CE+EPO", "CE+PNG", "CE+MGDA")
TASK_ORDER = ("sst2", "qnli", "mnli")


def _rank(order: tuple[str, ...], name: str) -> int:
    return order.index(name) if name in order else len(order)


def _loss_rank(loss: str) -> int:
    return _rank(LOSS_ORDER, loss)


def _order(value) -> tuple:
    """Sort numbers as numbers, then text (missing first)."""
    if value is None or value == "":
        return (0, 0.0, "")
    try:
        return (1, float(value), "")
    except (TypeError, ValueError):
        return (2, 0.0, str(value))


def short_labels(keys) -> dict[str, str]:
    """Each dotted key's shortest ending that no other of ``keys`` ends with (``optimizer.lr`` →
    ``lr``); an ending of only ``_target_``, ``name``, ``seed`` (read as the trial) or a number
    keeps its parent (``encoder.name``, ``data.seed``, ``budget.20``)."""
    keys = list(keys)
    labels = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            label = ".".join(parts[-n:])
            # a class path, a name or a table's numbered entry (budget.20) says little alone
            if (
                n == 1
                and len(parts) > 1
                and (label in ("_target_", "name", "seed") or label.isdigit())
            ):
                continue
            if not any(o != k and (o == label or o.endswith("." + label)) for o in keys):
                labels[k] = label
                break
        else:
            labels[k] = k
    return labels


def _md(key: str, text: str) -> str:
    """A setting's value in table.md: "—" when not set, a class path as its class name."""
    if text == "":
        return "—"
    if key.endswith("_target_"):
        text = text.rsplit(".", 1)[-1]
    return text.replace("|", "\\|")


def _where(label: str, key: str, where: list[tuple[str, list[str]]]) -> str:
    """``lr=1e-05 (CE+EPO, CE+LS)``; with several values ``path: /a (qnli), /b (sst2)``."""
    shown = [f"{_md(key, v)} ({', '.join(map(str, at))})" for v, at in where]
    return f"{label}={shown[0]}" if len(shown) == 1 else f"{label}: " + ", ".join(shown)


class Reference(NamedTuple):
    """Published numbers shown beside the table's: ``cells[(task, N, loss)] = (mean, std)`` as
    the file writes them (percent; std may be ""), and where they come from (``source``)."""

    source: str
    cells: dict[tuple[str, int, str], tuple[str, str]]

    def cell(self, task: str, n, loss: str) -> tuple[str, str]:
        """(mean, std) of one cell as the file gives them; ("", "") where it has none."""
        return self.cells.get((task, n, loss), ("", ""))


REFERENCE_COLUMNS = ("task", "N", "loss", "mean", "std", "source")


NUMBER = re.compile(r"\d+(\.\d+)?")  # a plain decimal, as a paper's table prints it


def read_reference(path: Path) -> Reference:
    """A reference table (``--reference``): a CSV with the columns task, N, loss, mean, std and
    source (lines starting with # are comments), one row per cell, test accuracy in percent as
    a plain decimal (``59.72``), std empty where the source gives none, N a whole number (``50``
    or ``50.0``), one source text for every row. Anything else stops in one line naming the
    file, its line and what is allowed."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is no column
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--reference {path}: cannot read it ({err})") from None
    kept = [
        line + "\n" if line.strip() and not line.lstrip().startswith("#") else "\n"
        for line in text.splitlines()
    ]  # comments blanked, not dropped, so that the reader's line numbers are the file's
    reader = csv.reader(kept, skipinitialspace=True)
    head, cells, sources = None, {}, set()
    for values in reader:
        where = f"--reference {path} line {reader.line_num}"
        if not values:
            continue
        if any("\n" in v for v in values):  # before stripping: an open quote on the last line
            raise ValueError(f"{where}: a quoted field runs over several lines; keep each on one")
        values = [v.strip() for v in values]
        if head is None:
            head = values
            if sorted(head) != sorted(REFERENCE_COLUMNS):
                raise ValueError(
                    f"{where}: columns {','.join(head)}; expected " + ",".join(REFERENCE_COLUMNS)
                )
            continue
        if len(values) != len(head):
            raise ValueError(f"{where}: {len(values)} fields; expected {len(head)}")
        row = dict(zip(head, values))
        if not re.fullmatch(r"\d+(\.0*)?", row["N"]) or float(row["N"]) < 1:
            raise ValueError(f"{where}: N {row['N']!r}; expected a whole number of 1 or more")
        n = int(float(row["N"]))
        for key in ("mean", "std"):
            if key == "std" and row[key] == "":
                continue
            if not NUMBER.fullmatch(row[key]) or float(row[key]) > 100:
                raise ValueError(
                    f"{where}: {key} {row[key]!r}; expected a percentage from 0 to 100 as a plain "
                    "decimal" + (" (or empty)" if key == "std" else "")
                )
        if not row["task"] or not row["loss"] or not row["source"]:
            raise ValueError(f"{where}: task, loss and source must not be empty")
        at = (row["task"], n, row["loss"])
        if at in cells:
            raise ValueError(f"{where}: a second row for {at[0]} N={n} {at[2]}")
        cells[at] = (row["mean"], row["std"])
        sources.add(row["source"])
    if head is None:
        raise ValueError(f"--reference {path}: no header and no rows")
    if len(sources) > 1:
        raise ValueError(
            f"--reference {path}: several sources ({', '.join(sorted(sources))}); give one "
            "file per source"
        )
    if not cells:
        raise ValueError(f"--reference {path}: a header but no rows")
    return Reference(sources.pop(), cells)


def p_column(baseline: str) -> str:
    """table.csv's p-value column: p_vs_ce_paired_t, p_vs_ce_ls_paired_t, ..."""
    return f"p_vs_{baseline.lower().replace('+', '_')}_paired_t"


def q_column(baseline: str) -> str:
    """table.csv's adjusted p-value column: q_vs_ce_bh, ..."""
    return f"q_vs_{baseline.lower().replace('+', '_')}_bh"


def write_tables(
    runs: pd.DataFrame,
    info: Settings,
    out: Path,
    left_out=(),
    baseline: str = "CE",
    reference: Reference | None = None,
    seeds: tuple[int, ...] | None = None,
) -> pd.DataFrame:
    """table.md and table.csv; returns the chosen groups (``choose``) in table order, with their
    p-values against ``baseline`` and first run's folder. With a ``reference``, each task's
    column has the reference's cell of the same (task, N, loss) beside it; ``seeds``: the seeds
    every group must have (None: every seed any run of its task and N has)."""
    p_col = p_column(baseline)
    keys = info.keys
    flat = settings_table(runs)
    runs = runs.join(flat[keys])
    chosen, incomplete, gid = choose(runs, keys, seeds)
    runs = runs.assign(gid=gid)
    acc = runs.pivot(index="seed", columns="gid", values="test_acc")
    base = baselines(chosen, keys, baseline)
    chosen[p_col] = [None if pd.isna(b) else paired_p(acc[g], acc[int(b)]) for g, b in base.items()]
    # the paired difference from the baseline, in points, with its 95% t interval
    diff = {
        g: paired_difference(100 * acc[g], 100 * acc[int(b)])
        for g, b in base.items()
        if not pd.isna(b)
    }
    d_cols = diff_columns(baseline)
    for k, col in enumerate(d_cols):
        chosen[col] = [None if diff.get(g) is None else diff[g][k] for g in chosen.index]
    # the family: every comparison in this table (all tasks, sizes and losses)
    q_col = q_column(baseline)
    chosen[q_col] = adjusted_p(chosen[p_col].tolist())
    family = int(chosen[p_col].notna().sum())
    chosen["n"] = chosen["seeds"].map(len)
    labels = short_labels([*keys, *info.constants, *info.per_loss, *info.per_task])

    def cell(r) -> str:
        if not pd.isna(r[p_col]):
            p = f", p{_p(r[p_col])}, q{_p(r[q_col])}"
        elif r["loss"] == baseline:
            p = ""
        elif pd.isna(base.get(r.name)):  # no complete baseline group of its task and N
            p = f", no {baseline} to compare"
        else:  # a baseline, but fewer than two seeds to pair
            p = ", one seed: no test"
        return f"{100 * r['test_acc_mean']:.1f}{spread(r)} (n={r['n']}{p})"

    def spread(r) -> str:
        return f" ± {100 * r['test_acc_std']:.1f}" if r["n"] > 1 else ""  # one seed: no std

    tasks = sorted(chosen["task"].unique(), key=lambda t: (_rank(TASK_ORDER, t), t))
    rows = chosen.drop_duplicates(["loss", "N", *keys])[["loss", "N", *keys]]
    rows = sorted(
        rows.itertuples(index=False),
        key=lambda r: (
            r[1] or 0,
            r[0] != "CE",
            r[0] != baseline,
            _loss_rank(r[0]),
            r[0],
            *map(_order, r[2:]),
        ),  # fmt: skip
    )
    at = {tuple(r[c] for c in ["task", "loss", "N", *keys]): g for g, r in chosen.iterrows()}

    def cited(task, loss, n) -> str:
        mean, std = reference.cell(task, n, loss)
        return "—" if mean == "" else mean + (f" ± {std}" if std else "")

    # ours beside the reference's: "here", with the encoder when every run used the same one
    encoders = runs["encoder"].dropna().unique()
    here = f"here, {ENCODERS.get(encoders[0], encoders[0])}" if len(encoders) == 1 else "here"
    head = ["loss", "N", *(labels[k] for k in keys)]
    for task in tasks:
        cited_as = f"{task} ({_md('source', reference.source)})" if reference else None
        head += [f"{task} ({here})", cited_as] if reference else [task]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = []
    for row in rows:
        cells = [row[0], _size(row[1]), *(_md(k, v) for k, v in zip(keys, row[2:]))]
        for task in tasks:
            g = at.get((task, *row))
            cells.append("—" if g is None else cell(chosen.loc[g]))
            order += [] if g is None else [g]
            if reference:
                cells.append(cited(task, row[0], row[1]))
        lines.append("| " + " | ".join(cells) + " |")
    by = " with the same settings (columns after N)" if keys else ""
    # a choice only where some row had several complete groups (τ, λ or preference swept)
    picked = bool((chosen["candidates"] > 1).any())
    what = (
        "Test accuracy (%) of the hyperparameters (τ, λ, preference) with the best mean "
        "validation accuracy"
        if picked
        else "Test accuracy (%) of the one setting each row ran (nothing chosen)"
    )
    expect = (
        f"the seeds {sweeps.seed_text(seeds)} (--seeds)"
        if seeds is not None
        else "every seed any run of its task and N has"
    )
    tests = (
        f"p: two-sided paired t-test against {baseline}{by} on the same seeds; q: p adjusted "
        f"for the table's {family} comparisons (Benjamini–Hochberg, "
        "scipy.stats.false_discovery_control). The p-values are over seeds on one fixed test "
        "set: they do not include the test set's own sampling error."
        if family
        else f"no p-values: no complete {baseline} row to compare with."
        if base.isna().all()
        else "no p-values: every row has one seed (a paired test needs two)."
    )
    lines += [
        "",
        f"{what}, mean ± sample std (ddof = 1) over seeds; n: seeds, every row has {expect}; "
        + tests,
    ]
    if reference:
        lines.append(
            f"Beside each task: {reference.source}, as the reference file gives it (— where it "
            "has no such cell); the p-values are this sweep's only."
        )
    members = runs[runs["gid"].isin(order)].copy()
    members["at"] = members["gid"].map({g: i for i, g in enumerate(order)})
    members = members.sort_values(["at", "seed"])
    skipped = members[members["skipped_steps"].fillna(0).astype(int) > 0]
    listed = ", ".join(f"{d}: {n}" for d, n in zip(skipped["dir"], skipped["skipped_steps"]))
    lines.append(
        "Steps skipped for non-finite values in the runs above: "
        f"{int(skipped['skipped_steps'].sum())}" + (f" ({listed})" if listed else "") + "."
    )
    lines.append(job_time(runs))
    lines.append(sweeps.code_versions(runs["code"]))
    # the settings that are no column, each once: one paragraph per kind
    notes = []
    if info.constants:
        shown = (f"{labels[k]}={_md(k, v)}" for k, v in info.constants.items())
        notes.append("All rows: " + ", ".join(shown) + ".")
    for title, settings in (("Per loss", info.per_loss), ("Per task", info.per_task)):
        if settings:
            shown = (_where(labels[k], k, where) for k, where in settings.items())
            notes.append(f"{title}: " + "; ".join(shown) + ".")
    for note in notes:
        lines += ["", note]
    lines += difference_table(chosen, rows, tasks, keys, at, baseline)
    if len(incomplete):
        lines += ["", "Incomplete groups (left out of the table):", ""]
        text = [
            f"- {g['task']} N={_size(g['N'])} {g['loss']} τ={g['temperature']} λ={g['lam']} "
            f"r1={g['r1']}"
            + "".join(f" {labels[k]}={_md(k, g[k])}" for k in keys)
            + f": seeds {list(g['seeds'])} of {list(g['expected'])}"
            for _, g in incomplete.iterrows()
        ]
        lines += sorted(text)
    if left_out:
        lines += ["", f"Runs left out ({len(left_out)}):", ""]
        lines += [f"- {where}: {why}" for where, why in left_out]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    columns = ["task", "N", "loss", *keys, *HYPER, "n", "seeds", "test_acc_mean", "test_acc_std"]
    columns += ["val_acc_mean", p_col, q_col, *d_cols]
    listed_seeds = chosen.loc[order, "seeds"].map(lambda s: " ".join(map(str, s)))
    table = chosen.loc[order].assign(seeds=listed_seeds)[columns]
    if reference:
        both = [reference.cell(t, n, loss) for t, n, loss in
                zip(table["task"], table["N"], table["loss"])]  # fmt: skip
        table = table.assign(
            reference_mean=[m for m, _ in both],
            reference_std=[s for _, s in both],
            reference_source=[reference.source if m != "" else "" for m, _ in both],
        )
    table.to_csv(out / "table.csv", index=False)
    return chosen.loc[order].assign(first_dir=members.groupby("gid")["dir"].first())


ENCODERS = {  # the encoder configs' names as a table names them
    "minilm": "all-MiniLM-L6-v2",
    "tiny": "tiny random RoBERTa",
    "roberta-base": "RoBERTa-base",
}


def _p(p: float) -> str:
    """A p-value in a cell: ``=0.034``, ``<0.001``."""
    return "<0.001" if p < 0.0005 else f"={p:.3f}"


def diff_columns(baseline: str) -> list[str]:
    """table.csv's paired-difference columns (points): diff_vs_ce, diff_vs_ce_ci95_low, ..."""
    name = f"diff_vs_{baseline.lower().replace('+', '_')}"
    return [name, f"{name}_ci95_low", f"{name}_ci95_high"]


def difference_table(chosen, rows, tasks, keys, at, baseline) -> list[str]:
    """table.md's second table: each row's mean paired difference from ``baseline`` (points)
    with its 95% t interval, per task; [] when nothing has a baseline."""
    col = diff_columns(baseline)
    if not chosen[col[0]].notna().any():
        return []
    head = ["loss", "N", *keys, *tasks]
    lines = [
        "",
        f"Paired difference from {baseline} (test accuracy, points; mean over seeds "
        "[95% t interval]):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in rows:
        if row[0] == baseline:
            continue
        cells = [row[0], _size(row[1]), *(_md(k, v) for k, v in zip(keys, row[2:]))]
        for task in tasks:
            g = at.get((task, *row))
            r = None if g is None else chosen.loc[g]
            if r is None or pd.isna(r[col[0]]):
                cells.append("—")
            else:
                cells.append(f"{r[col[0]]:+.1f} [{r[col[1]]:+.1f}, {r[col[2]]:+.1f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def job_time(runs: pd.DataFrame) -> str:
    """One line: the summed wall time of every run read (each job's ``wall_time_s``: build, fit
    and test; runs left out are not counted), per task when there are several."""
    secs = pd.to_numeric(runs["wall_time_s"], errors="coerce")
    known = int(secs.notna().sum())
    text = f"Job time: {secs.sum():,.0f} s ({secs.sum() / 3600:.1f} h) over {known} runs"
    if known < len(runs):
        text += f" ({len(runs) - known} without a recorded wall time)"
    if runs["task"].nunique() > 1:
        per = secs.groupby(runs["task"]).sum()
        text += " (" + ", ".join(f"{t} {v:,.0f} s" for t, v in per.items()) + ")"
    return text + "."


def write_runs(runs: pd.DataFrame, keys: list[str], out: Path) -> None:
    """runs.csv: one line per run, its RUN_COLUMNS and row keys."""
    runs[list(RUN_COLUMNS)].join(settings_table(runs)[keys]).to_csv(out / "runs.csv", index=False)


def _size(n) -> str:
    """N as a figure names it: the number, or "all" for runs on the whole training set."""
    if n is None or pd.isna(n):
        return "all"
    return str(int(n)) if float(n).is_integer() else str(n)  # grouping may have made 20 a 20.0


def figure_name(stem: str, task: str, n, several: bool) -> str:
    """``stem.png`` for a report of one (task, N); ``stem_<task>_N<N>.png`` for each of several
    (``N all``: the whole training set)."""
    return f"{stem}_{task}_N{_size(n)}.png" if several else f"{stem}.png"


def several_cells(runs: pd.DataFrame) -> bool:
    """Whether the report covers more than one (task, N) (N may be None: the whole training
    set), so that its figures are named per cell."""
    return runs.groupby(["task", "N"], dropna=False).ngroups > 1


def loss_space_figure(runs: pd.DataFrame, out: Path, several: bool) -> list[str]:
    """The final training losses of the two-objective runs, one figure per (task, N) (losses of
    other tasks or sizes are not comparable); returns the files written."""
    pts = runs.dropna(subset=["l1", "l2"])
    cells = pts.groupby(["task", "N"], sort=True, dropna=False)
    written = []
    for (task, n), sel in cells:
        name = figure_name("loss_space", task, n, several)
        _loss_space(sel, out / name, f"{task}, N = {_size(n)}: " if several else "")
        written.append(name)
    return written


def _loss_space(pts: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import moocore

    allp = pts[["l1", "l2"]].to_numpy(float)
    ref = allp.max(0) * 1.05
    fig, ax = plt.subplots(figsize=(6, 5))
    # one series per combiner, and per preference when the sweep has several; distinct hollow
    # markers keep series that land on the same points (e.g. PNG far from the front = MGDA) visible
    several_r1 = pts["r1"].nunique(dropna=False) > 1
    pts = pts.assign(series_r1=pts["r1"] if several_r1 else None)
    series = sorted(pts.groupby(["loss", "series_r1"], dropna=False), key=lambda s: str(s[0]))
    markers = "osD^vx+*"
    for k, ((loss, r1), sel) in enumerate(series):
        sel = sel[["l1", "l2"]].to_numpy(float)
        hv = moocore.hypervolume(sel, ref=ref)
        name = loss if pd.isna(r1) else f"{loss} r1={r1}"
        marker = markers[k % len(markers)]
        # line markers (x, +) take one colour; the others are drawn hollow in it
        colours = (
            {"c": f"C{k}"} if marker in "x+" else {"facecolors": "none", "edgecolors": f"C{k}"}
        )
        ax.scatter(
            sel[:, 0],
            sel[:, 1],
            s=36 - 3 * (k % len(markers)),
            marker=marker,
            label=f"{name} (HV {hv:.4f})",
            **colours,
        )
    ax.set_xlabel(r"final $\ell_1$ (train)")
    ax.set_ylabel(r"final $\ell_2$ (train)")
    ax.set_title(
        f"{title}final losses per run; HV reference point ({ref[0]:.3f}, {ref[1]:.3f})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def tsne_figure(
    chosen: pd.DataFrame, keys: list[str], sweep_dir: Path, out: Path, several: bool
) -> list[str]:
    """t-SNE of the test embeddings of the chosen CE+LS, CE+EPO and CE+SCL models (their first
    seed), one figure per (task, N); returns the files written (none without embeddings)."""
    labels = short_labels(keys)
    figures: dict[str, list] = {}
    ranked = chosen.assign(rank=chosen["loss"].map(_loss_rank))
    for _, g in ranked.sort_values(["task", "N", "rank", "loss", *keys], kind="stable").iterrows():
        if g["loss"] not in ("CE+LS", "CE+EPO", "CE+SCL"):
            continue
        path = sweep_dir / g["first_dir"] / "test_embeddings.npz"
        if path.exists():
            where = "".join(f", {labels[k]}={_md(k, g[k])}" for k in keys)
            title = f"{g['loss']} ({g['task']}, N={g['N']}{where}, seed {g['seeds'][0]})"
            name = figure_name("tsne", g["task"], g["N"], several)
            figures.setdefault(name, []).append((title, np.load(path)))
    for name, panels in figures.items():
        _tsne(panels, out / name)
    return list(figures)


def _tsne(panels: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (title, data) in zip(axes[0], panels):
        tsne = TSNE(
            n_components=2, random_state=0, init="pca", perplexity=min(30, len(data["labels"]) - 1)
        )
        # one OpenMP thread: the Barnes-Hut gradient's threads wait on each other, and on cores
        # busy with a sweep's jobs that costs far more than the threads gain (an SST-2 report,
        # 6 maps of 436 points, 2 cores running a sweep: 148 s with both threads, 18 s with one)
        with threadpool_limits(limits=1, user_api="openmp"):
            emb = tsne.fit_transform(data["features"])
        labels = data["labels"]
        colours = plt.get_cmap("coolwarm")(np.linspace(0, 1, max(2, len(np.unique(labels)))))
        for colour, cls in zip(colours, np.unique(labels)):
            at = labels == cls
            ax.scatter(emb[at, 0], emb[at, 1], s=6, color=colour, label=f"class {cls}")
        ax.legend(fontsize=7, markerscale=2, loc="best")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell(text: str):
    """A table.csv cell as a number when it is one (empty: no value)."""
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number


def log_to_wandb(
    out: Path, sweep_dir: Path, project: str, entity: str | None = None, figures=()
) -> str:
    """Table 1, the figures (file names in ``out`` that this report wrote: older files there are
    not logged) and the report's files into one W&B run; returns the run's folder (offline) or
    URL. Refuses an online run without an API key, in one line (ValueError)."""
    from moo_lightning.loggers import require_wandb_credentials

    require_wandb_credentials()
    import wandb

    with open(out / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else ["task"]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", sweep_dir.resolve().name) or "sweep"
    run = wandb.init(
        project=project,
        entity=entity,
        job_type="report",
        name=f"report {name}",
        dir=str(out),
        config={"sweep_dir": str(sweep_dir.resolve()), "report_dir": str(out.resolve())},
    )
    try:
        logged = {
            "table1": wandb.Table(
                columns=columns, data=[[_cell(r[c]) for c in columns] for r in rows]
            )
        }
        figures = [out / name for name in figures]
        for figure in figures:
            logged[figure.stem] = wandb.Image(str(figure))
        run.log(logged)
        run.summary["table1_rows"] = len(rows)
        artifact = wandb.Artifact(f"report-{name}", type="report")
        for file in [out / "table.md", out / "table.csv", out / "runs.csv", *figures]:
            if file.is_file():
                artifact.add_file(str(file))
        run.log_artifact(artifact)
        where = Path(run.dir).parent if run.offline else run.url  # offline: the run folder
    finally:
        run.finish()
    return str(where)


def check_out(out: Path) -> None:
    """The report's folder, made when missing and tried for writing before any table is built:
    an existing file, or a folder that cannot be made or written to, is one line."""
    import tempfile

    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} is a file; give a folder for the report's files")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise SystemExit(
            f"error: --out {out}: cannot write there ({err.strerror or err}); give a folder you "
            "can write to"
        ) from None


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--baseline",
        default=None,
        help="the loss the p-values compare with, as the table names it (default CE, when the "
        "sweep has it; CE+LS to compare combiners)",
    )
    ap.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="a CSV of published numbers to show beside each task's column (task, N, loss, mean, "
        "std, source; e.g. sweep/reference/moukafih2023_table1.csv)",
    )
    ap.add_argument(
        "--seeds",
        type=sweeps.seeds_argument,
        default=None,
        help="the seeds every row must have, e.g. 0-9 or 0,1,5 (default: every seed any run of "
        "the row's task and N has); runs of other seeds are left out and listed",
    )
    ap.add_argument("--wandb", action="store_true", help="also log the report to a W&B run")
    ap.add_argument("--project", default="moo-lightning", help="W&B project (with --wandb)")
    ap.add_argument("--entity", default=None, help="W&B entity (with --wandb)")
    args = ap.parse_args(argv)
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"error: {args.sweep_dir} is not a folder (give a sweep's folder)")
    try:
        reference = read_reference(args.reference) if args.reference else None
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    runs, left_out = load_runs(args.sweep_dir)
    if args.seeds is not None:
        outside = ~runs["seed"].astype(int).isin(args.seeds)
        left_out += [
            (d, f"seed {seed} is not one of --seeds {sweeps.seed_text(args.seeds)}")
            for d, seed in zip(runs.loc[outside, "dir"], runs.loc[outside, "seed"])
        ]
        runs = runs[~outside].reset_index(drop=True)
    if runs.empty:
        raise SystemExit(
            f"error: no complete text-classification runs under {args.sweep_dir} (toy sweeps: "
            "sweep/toy_table.py; Multi-MNIST sets: sweep/pareto_report.py)"
        )
    if args.baseline is not None and args.baseline not in set(runs["loss"]):
        raise SystemExit(  # before anything is written: an earlier report stays whole
            f"error: --baseline {args.baseline}: no run of that loss here; the losses are "
            + ", ".join(sorted(set(runs["loss"])))
        )
    check_out(args.out)
    info = describe_settings(runs)
    write_runs(runs, info.keys, args.out)
    chosen = write_tables(
        runs, info, args.out, left_out, args.baseline or "CE", reference, args.seeds
    )
    several = several_cells(runs)
    # figures an earlier report left here are replaced, as its tables are: a sweep that grew
    # from one (task, N) to several must not keep its old loss_space.png beside the new ones
    for stem in ("loss_space", "tsne"):  # only names figure_name gives
        for stale in [*args.out.glob(f"{stem}.png"), *args.out.glob(f"{stem}_*_N*.png")]:
            stale.unlink()
    figures = loss_space_figure(runs, args.out, several)
    tsne = tsne_figure(chosen, info.keys, args.sweep_dir, args.out, several)
    print((args.out / "table.md").read_text())
    print(
        f"{len(runs)} runs; wrote "
        + ", ".join(["table.md", "table.csv", "runs.csv", *figures, *tsne])
        + ("" if tsne else " (no test embeddings, so no t-SNE: module.save_test_embeddings=true)")
        + f" to {args.out}"
    )
    if args.wandb:
        try:
            where = log_to_wandb(
                args.out, args.sweep_dir, args.project, args.entity, [*figures, *tsne]
            )
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        print(f"W&B run: {where}")


if __name__ == "__main__":
    main()
