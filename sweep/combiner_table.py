"""The combiner league table on Multi-MNIST (sweep=combiners_mm): one shared model per run.

    python sweep/combiner_table.py SWEEP_DIR --out OUT_DIR [--baseline ls]
        [--wandb [--project P] [--entity E]]

SWEEP_DIR is searched recursively for ``metrics.json``; each one is a job that trained one
Multi-LeNet (``members`` = 1) on both digits with one combiner for one seed.

Writes to OUT_DIR:

- ``table.md`` / ``table.csv``: one row per combiner (and settings group, below): test accuracy
  of task 1 and task 2 (1 − test error; mean ± std, ddof 1, over seeds), Δm%, the paired p-value
  against the baseline and its Benjamini–Hochberg adjustment over the table's comparisons (q),
  the wall time per run (``wall_time_s``, mean ± std), n (seeds), and the
  final validation accuracy (1 − ``val/error_mean``, mean over seeds);
- ``runs.csv``: one line per run.

Δm% = 100 · (1/T) Σ_t (A_t − B_t) / B_t over the T = 2 tasks, A_t the row's seed-mean test
accuracy of task t and B_t the baseline row's (``--baseline``, by default the equal-weight LS
row): the mean relative change of accuracy against it, positive when the combiner is more
accurate (accuracies: higher is better, so no sign flip); the table's columns name the
baseline. p: two-sided paired t-test (``scipy.stats.ttest_rel``) of the per-seed mean accuracy
of the two tasks against the baseline's on the seeds both rows have (p_task1 / p_task2 in
table.csv).

Nothing is chosen by test accuracy: rows are listed in name order (the baseline first), and the
line "highest validation accuracy" names the five rows with the best final validation accuracy
(the ones a follow-up study such as sweep=combiners_sst2 runs).

--wandb also logs the table (a wandb.Table ``league_table``, with Δm and p) and ``delta_m/<row>``
in the summary to one W&B run of job type ``report`` (WANDB_MODE=offline: a local run in
OUT_DIR/wandb); ``sweep/dashboard.py --study combiners_mm`` shows that table.

Which runs are averaged: a row is a combiner (as the run records it: ``torchjd[UPGrad]``,
``log_gram[mgda]``) together with its settings except the trial
(``moo_lightning.sweeps.trial_free``); runs of one combiner with other settings become rows
``name [2]``, ... listed under the table. Left out, with the reason (the rules of
``moo_lightning.sweeps.load_runs``): unreadable JSON, incomplete or not-ok runs, other tasks, a
seed that is not an integer, ``members`` ≠ 1, malformed test errors, no recorded settings, a
second run with the same combiner, settings and seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's moo_lightning
from moo_lightning import sweeps  # noqa: E402
from moo_lightning.record import RunRecord  # noqa: E402
from moo_lightning.sweeps import (  # noqa: E402
    adjusted_p,
    is_number,
    paired_p,
    settings_differences,
)

TASK = "multi_mnist"
TASKS = (1, 2)
RUN_COLUMNS = ["row", "combiner", "seed", "acc_1", "acc_2", "val_acc", "wall_time_s", "folder"]


def _parse(m: RunRecord) -> dict:
    """The fields of one finished multi_mnist run's record the table uses; ValueError(why)
    otherwise (which runs are finished, of the task and not duplicates: ``sweeps.load_runs``)."""
    if m.get("members") != 1:
        raise ValueError(f"members {m.get('members')!r}: this table compares one model per run")
    combiner = m.combiner
    if not isinstance(combiner, str) or not combiner:
        raise ValueError("no combiner name")
    if not isinstance(m.settings, dict):
        raise ValueError("no settings recorded: cannot tell which runs may be averaged")
    errors = m.get("test_errors")
    if not (
        isinstance(errors, list)
        and len(errors) == 1
        and isinstance(errors[0], list)
        and len(errors[0]) == 2
        and all(is_number(e) for e in errors[0])
    ):
        raise ValueError("test_errors is not one row of 2 finite numbers")
    val_error = m.get("val/error_mean")
    return {
        "combiner": combiner,
        "acc_1": 1.0 - errors[0][0],
        "acc_2": 1.0 - errors[0][1],
        "val_acc": 1.0 - val_error if is_number(val_error) else np.nan,
        "wall_time_s": m.wall_time_s if is_number(m.wall_time_s) else np.nan,
    }


def load(sweep_dir: Path) -> tuple[pd.DataFrame, dict, list[tuple[str, str]]]:
    """(runs, settings of each (combiner, group), left out (folder, why))."""
    kept, left_out = sweeps.load_runs(
        sweep_dir,
        _parse,
        tasks=TASK,
        identity=lambda m, run: run["combiner"],
        same="combiner, settings",
    )
    records, settings_of = [], {}
    for run in kept:
        identity = sweeps.trial_free(run.settings, run.seed)
        group = json.dumps(identity, sort_keys=True, default=str)
        settings_of[(run.fields["combiner"], group)] = identity
        records.append(
            {
                **run.fields,
                "seed": run.seed,
                "method": run.fields["combiner"],
                "group": group,
                "folder": run.folder,
            }
        )
    runs = pd.DataFrame.from_records(records)
    if not runs.empty:
        labels = sweeps.row_labels(zip(runs["method"], runs["group"]))
        rows = [labels[key] for key in zip(runs["method"], runs["group"])]
        runs = runs.assign(row=[r for r, _ in rows], variant=[v for _, v in rows])
    return runs, settings_of, left_out


def summarise(runs: pd.DataFrame, baseline: str) -> tuple[pd.DataFrame, str | None]:
    runs = runs.assign(acc_mean=(runs["acc_1"] + runs["acc_2"]) / 2)
    agg = {"combiner": ("combiner", "first"), "n": ("seed", "size")}
    agg["seeds"] = ("seed", lambda s: " ".join(map(str, sorted(s))))
    for col in ("acc_1", "acc_2", "wall_time_s"):
        agg[f"{col}_mean"] = (col, "mean")
        agg[f"{col}_std"] = (col, "std")
    agg["val_acc_mean"] = ("val_acc", "mean")
    table = runs.groupby("row").agg(**agg)
    base_rows = table.index[table["combiner"] == baseline]
    base = base_rows[0] if len(base_rows) == 1 else None
    if base is None:
        table["delta_m"] = np.nan
    else:
        rel = [
            (table[f"acc_{t}_mean"] - table.loc[base, f"acc_{t}_mean"])
            / table.loc[base, f"acc_{t}_mean"]
            for t in TASKS
        ]
        table["delta_m"] = 100.0 * sum(rel) / len(TASKS)
    for col, name in (("acc_mean", "p"), ("acc_1", "p_task1"), ("acc_2", "p_task2")):
        wide = runs.pivot(index="seed", columns="row", values=col)
        table[name] = [
            None if base is None or row == base else paired_p(wide[row], wide[base])
            for row in table.index
        ]
    table["q"] = adjusted_p(table["p"])  # the family: every row compared with the baseline
    order = sorted(table.index, key=lambda r: (r != base, r))
    return table.loc[order], base


def _pm(mean, std, scale=100.0, digits=2) -> str:
    s = "—" if pd.isna(std) else f"{scale * std:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {s}"


def _p(p) -> str:
    if p is None or pd.isna(p):
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def write_tables(runs, table, base, baseline, settings_of, left_out, out: Path) -> str:
    # the row compared with: its name in the table (the default, equal-weight LS: "LS")
    ref = base or baseline
    label, ref_text = ("LS", "equal-weight LS") if ref == "ls" else (ref, ref)
    cols = ["combiner", "acc task 1 (%)", "acc task 2 (%)", f"Δm% vs {label}", f"p vs {label}"]
    cols += ["q (BH)", "wall s", "n"]
    lines = ["# Multi-MNIST: combiners compared (one shared Multi-LeNet per run)", ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row, r in table.iterrows():
        dm = "—" if pd.isna(r["delta_m"]) else f"{r['delta_m']:+.2f}"
        cells = [
            row,
            _pm(r["acc_1_mean"], r["acc_1_std"]),
            _pm(r["acc_2_mean"], r["acc_2_std"]),
            dm,
            _p(r["p"]),
            _p(r["q"]),
            _pm(r["wall_time_s_mean"], r["wall_time_s_std"], scale=1.0, digits=1),
            str(r["n"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Accuracy = 1 − test error of each task (digit), mean ± std (ddof 1) over seeds. "
        f"Δm% = 100 · ½ Σ_t (A_t − B_t) / B_t with A_t the seed-mean accuracy of task t and B_t "
        f"that of {ref_text}: positive = more accurate than {ref_text}. "
        + (
            f"p: two-sided paired t-test (scipy.stats.ttest_rel) of the per-seed mean accuracy "
            f"of both tasks against {base} on the seeds both rows have; — for {base} itself and "
            "with fewer than 2 pairs; 1 when every difference is zero. q: p adjusted for the "
            f"{int(table['p'].notna().sum())} comparisons of this table (Benjamini–Hochberg, "
            "scipy.stats.false_discovery_control): among rows with q < α the expected share of "
            "false discoveries is at most α. Rows that run one method through two "
            "implementations (a native combiner and torchjd[...]) are cross-checks, not "
            "independent evidence."
            if base
            else f"Δm and p: — (no single {baseline} row to compare with)."
        ),
        "Wall time: the job's wall_time_s (build, fit and test), mean ± std over seeds.",
    ]
    val = table["val_acc_mean"].dropna().sort_values(ascending=False)
    val = val[[table.loc[r, "combiner"] != baseline for r in val.index]]
    if len(val):
        lines += [
            "",
            "Highest final validation accuracy (mean of both tasks, seed mean; chosen without "
            "the test split): " + ", ".join(f"{r} ({100 * v:.2f}%)" for r, v in val[:5].items()),
        ]
    all_seeds = set(runs["seed"])
    short = table[table["n"] < len(all_seeds)]
    if len(short):
        lines += ["", "Rows missing seeds (reported with their n):", ""]
        lines += [
            f"- {row}: seeds {r['seeds']} of {sorted(all_seeds)}" for row, r in short.iterrows()
        ]
    groups = runs.drop_duplicates("row").set_index("row")
    firsts = groups[groups["variant"] == 1].reset_index().set_index("method")
    for row, g in groups[groups["variant"] > 1].iterrows():
        first = firsts.loc[g["method"]]
        diff = settings_differences(
            settings_of[(g["method"], first["group"])], settings_of[(g["method"], g["group"])]
        )
        lines.append(f"- {row} differs from {first['row']} in: " + "; ".join(diff))
    if left_out:
        lines += ["", f"Left out ({len(left_out)}):", ""]
        lines += [f"- {where}: {why}" for where, why in left_out]
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    csv_cols = ["combiner", "n", "seeds", "acc_1_mean", "acc_1_std", "acc_2_mean", "acc_2_std"]
    csv_cols += ["delta_m", "p", "q", "p_task1", "p_task2", "wall_time_s_mean", "wall_time_s_std"]
    csv_cols += ["val_acc_mean"]
    table[csv_cols].rename_axis("row").to_csv(out / "table.csv")
    return text


def log_to_wandb(out: Path, table: pd.DataFrame, project: str, entity: str | None) -> str:
    """The league table into one W&B run (job type ``report``); returns its folder (offline)
    or URL. Refuses an online run without an API key, in one line (ValueError)."""
    from moo_lightning.loggers import require_wandb_credentials

    require_wandb_credentials()
    import wandb

    rows = pd.read_csv(out / "table.csv")
    rows = rows.astype(object).where(rows.notna(), None)
    run = wandb.init(
        project=project,
        entity=entity,
        job_type="report",
        name="report combiners_mm",
        dir=str(out),
        config={"report_dir": str(out.resolve())},
    )
    try:
        run.log({"league_table": wandb.Table(columns=list(rows), data=rows.values.tolist())})
        run.summary["league_rows"] = len(rows)
        for row, value in table["delta_m"].items():
            if not pd.isna(value):
                run.summary[f"delta_m/{row}"] = float(value)
        where = Path(run.dir).parent if run.offline else run.url
    finally:
        run.finish()
    return str(where)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--baseline", default="ls", help="the combiner Δm and p compare with")
    ap.add_argument("--wandb", action="store_true", help="also log the table to a W&B run")
    ap.add_argument("--project", default="moo-lightning", help="W&B project (with --wandb)")
    ap.add_argument("--entity", default=None, help="W&B entity (with --wandb)")
    args = ap.parse_args(argv)
    runs, settings_of, left_out = load(args.sweep_dir)
    if runs.empty:
        listed = "".join(f"\n- {where}: {why}" for where, why in left_out)
        raise SystemExit(f"error: no usable {TASK} runs under {args.sweep_dir}{listed}")
    args.out.mkdir(parents=True, exist_ok=True)
    runs.sort_values(["row", "seed"])[RUN_COLUMNS].to_csv(args.out / "runs.csv", index=False)
    table, base = summarise(runs, args.baseline)
    print(write_tables(runs, table, base, args.baseline, settings_of, left_out, args.out))
    print(f"{len(runs)} runs, {len(table)} rows; wrote table.md, table.csv, runs.csv to {args.out}")
    if args.wandb:
        try:
            where = log_to_wandb(args.out, table, args.project, args.entity)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        print(f"W&B run: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
