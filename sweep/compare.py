"""Compare methods on any task's sweep: one row per method, each test metric's mean ± std over
seeds, Δm% against a baseline, paired p-values and their Benjamini–Hochberg adjustment.

    python sweep/compare.py SWEEP_DIR --out OUT_DIR [--baseline ls] [--metrics M1,M2]
                            [--seeds 0-9] [--larger M,...] [--smaller M,...]

For a task with no table script of its own (a user's task: ``docs/extending``), or to compare
combiners on a built-in one. SWEEP_DIR is searched recursively for ``metrics.json``; a run's
method is its ``method`` label (``method=...`` on the command line), else the combiner that
ran. Runs of one method whose settings differ in more than the trial (``seed``) are separate
rows, ``name [2]``, ...; their differing settings are listed under the table.

Metrics: ``--metrics`` (comma-separated record keys), by default every numeric ``test/...``
entry that every kept run has (but ``test/examples``). Whether larger is better comes from the
module class the runs were made with (``MultiObjectiveModule.larger_is_better``: accuracies and
hypervolumes up; losses, errors, MSEs down), so its package must import, as for training
(``PYTHONPATH``); ``--larger`` / ``--smaller`` name the others (a metric whose direction is
unknown, or a module that does not import, stops the script in one line).

Per row: n (seeds), each metric's mean ± sample std (ddof 1), Δm% = 100 · (1/T) Σ_t s_t (M_t −
B_t) / |B_t| over the T metrics, M_t the row's seed mean, B_t the baseline's, s_t = +1 where
larger is better and −1 where smaller is (positive: better than the baseline on average), the
mean wall time. p: two-sided one-sample t-test of the per-seed Δm (each seed's metrics against
the baseline's same seed, relative to the baseline's means) against 0, i.e. a paired test on the
seeds both have; q: p adjusted over the table's comparisons (``scipy.stats.
false_discovery_control``). table.csv also has each metric's paired p (``p_<metric>``).

Rows must have every expected seed (``--seeds``, else every seed any kept run has); rows
missing one are listed as incomplete and never averaged. Nothing is chosen: rows are in name
order, the baseline first. Left out, with the reason: the rules of
``moo_lightning.sweeps.load_runs`` (unfinished or failed runs, duplicates, job folders without a
record, ...) and runs missing a metric. Writes OUT_DIR/table.md, table.csv and runs.csv.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's moo_lightning
from moo_lightning import sweeps  # noqa: E402
from moo_lightning.record import RunRecord  # noqa: E402
from moo_lightning.sweeps import adjusted_p, is_number, paired_p  # noqa: E402


def _method(m: RunRecord) -> str:
    return str(m.method or m.combiner or "?")


def load(sweep_dir: Path) -> tuple[pd.DataFrame, dict, list[tuple[str, str]], list]:
    """(one row per kept run: row label, method, seed, every numeric test/ entry, wall time,
    folder, code; the settings of each row; the runs left out (folder, why); the kept runs)."""
    kept, left_out = sweeps.load_runs(
        sweep_dir, identity=lambda m, _: _method(m), same="method, settings"
    )
    records, settings_of = [], {}
    for run in kept:
        m = run.record
        entries = {k: v for k, v in m.test.items() if k != "test/examples" and is_number(v)}
        entries |= {k: v for k, v in m.task_metrics.items() if is_number(v)}
        entries |= {k: v for k, v in m.val.items() if is_number(v)}
        settings_of[(_method(m), run.group)] = sweeps.trial_free(run.settings, run.seed)
        records.append(
            {
                "method": _method(m),
                "group": run.group,
                "seed": run.seed,
                "wall_time_s": m.wall_time_s if is_number(m.wall_time_s) else np.nan,
                "folder": run.folder,
                "code": sweeps.code_label(m),
                "module": str((run.settings.get("module") or {}).get("_target_", "")),
                **entries,
            }
        )
    runs = pd.DataFrame.from_records(records)
    if not runs.empty:
        labels = sweeps.row_labels(zip(runs["method"], runs["group"]))
        runs = runs.assign(row=[labels[k][0] for k in zip(runs["method"], runs["group"])])
    return runs, settings_of, left_out, kept


def direction(metric: str, modules: list[str], larger: set[str], smaller: set[str]) -> int:
    """+1 when larger ``metric`` is better, −1 when smaller is: ``--larger``/``--smaller``, else
    what the runs' module class says (its ``monitor_mode``); ValueError when neither says."""
    if metric in larger:
        return 1
    if metric in smaller:
        return -1
    import importlib

    from moo_lightning.module import MultiObjectiveModule

    modes = set()
    for target in modules:
        path, _, name = target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(path), name) if target else MultiObjectiveModule
        except Exception:  # noqa: BLE001 - its own rules may differ from the shared ones: ask
            raise ValueError(
                f"the runs' module {target} does not import here, so whether larger {metric} is "
                "better cannot be read from it; put its package on PYTHONPATH (as for training) "
                "or name the metric in --larger or --smaller"
            ) from None
        modes.add(getattr(cls, "monitor_mode", MultiObjectiveModule.monitor_mode)(metric))
    if len(modes) == 1 and None not in modes:
        return 1 if modes.pop() == "max" else -1
    raise ValueError(
        f"whether larger {metric} is better is not known to the runs' module; name it in "
        "--larger or --smaller"
    )


def summarise(
    runs: pd.DataFrame, metrics: list[str], signs: dict[str, int], baseline: str, seeds
) -> tuple[pd.DataFrame, str | None, pd.DataFrame]:
    """(the table of complete rows, the baseline row's label or None, the incomplete rows)."""
    expected = tuple(sorted(seeds if seeds is not None else set(runs["seed"].astype(int))))
    have = runs.groupby("row")["seed"].agg(lambda s: tuple(sorted(int(x) for x in s)))
    complete = have[have == expected].index
    incomplete = pd.DataFrame(
        {"seeds": have[have != expected], "expected": [expected] * int((have != expected).sum())}
    )
    runs = runs[runs["row"].isin(complete)]
    agg = {"method": ("method", "first"), "n": ("seed", "size")}
    agg["seeds"] = ("seed", lambda s: " ".join(map(str, sorted(s))))
    for col in (*metrics, "wall_time_s"):
        agg[f"{col}:mean"] = (col, "mean")
        agg[f"{col}:std"] = (col, "std")
    table = runs.groupby("row").agg(**agg)
    base_rows = table.index[table["method"] == baseline]
    base = base_rows[0] if len(base_rows) == 1 else None
    table["delta_m"] = np.nan
    table["p"] = None
    for t in metrics:
        table[f"p_{t}"] = None
    if base is not None:
        ref = {t: float(table.loc[base, f"{t}:mean"]) for t in metrics}
        if all(math.isfinite(v) and v != 0 for v in ref.values()):
            rel = sum(signs[t] * (table[f"{t}:mean"] - ref[t]) / abs(ref[t]) for t in metrics)
            table["delta_m"] = 100.0 * rel / len(metrics)
            # per seed: each seed's relative change against the baseline's same seed
            wide = {t: runs.pivot(index="seed", columns="row", values=t) for t in metrics}
            per_seed = {
                row: sum(signs[t] * (wide[t][row] - wide[t][base]) / abs(ref[t]) for t in metrics)
                * (100.0 / len(metrics))
                for row in table.index
            }
            zero = pd.Series(0.0, index=wide[metrics[0]].index)
            table["p"] = [
                None if row == base else paired_p(per_seed[row], zero) for row in table.index
            ]
        for t in metrics:
            wide_t = runs.pivot(index="seed", columns="row", values=t)
            table[f"p_{t}"] = [
                None if row == base else paired_p(wide_t[row], wide_t[base]) for row in table.index
            ]
    table["q"] = adjusted_p(table["p"].tolist())
    order = sorted(table.index, key=lambda r: (r != base, r))
    return table.loc[order], base, incomplete


def _pm(mean, std) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.4g}" + ("" if pd.isna(std) else f" ± {std:.2g}")


def _p(p) -> str:
    if p is None or pd.isna(p):
        return "—"
    return "<0.001" if p < 0.0005 else f"{p:.3f}"


def write(runs, table, base, baseline, metrics, signs, settings_of, left_out, incomplete, out):
    arrows = {t: "↑" if signs[t] > 0 else "↓" for t in metrics}
    head = [
        "method",
        *(f"{t} {arrows[t]}" for t in metrics),
        f"Δm% vs {baseline}",
        "p",
        "q",
        "wall s",
        "n",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, r in table.iterrows():
        cells = [row, *(_pm(r[f"{t}:mean"], r[f"{t}:std"]) for t in metrics)]
        cells += ["—" if pd.isna(r["delta_m"]) else f"{r['delta_m']:+.2f}", _p(r["p"]), _p(r["q"])]
        wall = r["wall_time_s:mean"]
        cells += ["—" if pd.isna(wall) else f"{wall:.1f}", str(r["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    family = int(pd.Series(table["p"]).notna().sum())
    lines += [
        "",
        "Test metrics, mean ± sample std (ddof 1) over seeds (↑ larger is better, ↓ smaller). "
        + (
            f"Δm%: mean relative change against {baseline} over the {len(metrics)} "
            f"metric{'s' if len(metrics) > 1 else ''}, positive when better; p: two-sided "
            "t-test of the per-seed Δm against 0 (paired by seed); q: p adjusted over the "
            f"table's {family} comparisons (Benjamini–Hochberg). "
            if base is not None
            else f"No Δm or p: no single complete row of method {baseline!r} (--baseline). "
        )
        + "Nothing is chosen: rows in name order, the baseline first.",
    ]
    lines.append(sweeps.code_versions(runs["code"]))
    lines += variant_notes(settings_of, set(table.index))
    if len(incomplete):
        lines += ["", "Incomplete rows (left out of the table):", ""]
        lines += [
            f"- {row}: seeds {list(r['seeds'])} of {list(r['expected'])}"
            for row, r in incomplete.iterrows()
        ]
    if left_out:
        lines += ["", f"Runs left out ({len(left_out)}):", ""]
        lines += [f"- {where}: {why}" for where, why in left_out]
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    cols = ["method", "n", "seeds"]
    for t in metrics:
        cols += [f"{t}:mean", f"{t}:std"]
    cols += [
        "delta_m",
        "p",
        "q",
        *(f"p_{t}" for t in metrics),
        "wall_time_s:mean",
        "wall_time_s:std",
    ]
    table[cols].rename_axis("row").to_csv(out / "table.csv")
    keep = ["row", "method", "seed", *metrics, "wall_time_s", "code", "folder"]
    runs[keep].sort_values(["row", "seed"]).to_csv(out / "runs.csv", index=False)
    return text


def variant_notes(settings_of: dict, shown: set[str]) -> list[str]:
    """For each method with several rows, the settings in which its rows differ, row by row
    (``- ls [2]: data.num_train=50, optimizer.lr=0.001``), for the rows ``shown``; the settings
    compared are those of every row of the method, the incomplete ones too (a baseline ``ls [1]``
    shown alone still says which settings it ran)."""
    labels = sweeps.row_labels(settings_of.keys())
    by_method: dict[str, list[tuple[str, dict]]] = {}
    for key, settings in settings_of.items():
        label = labels[key][0]
        if label.endswith("]"):
            by_method.setdefault(key[0], []).append((label, sweeps.flatten(settings)))
    lines = []
    for _, rows in sorted(by_method.items()):
        keys = sorted({k for _, flat in rows for k in flat})
        varying = [k for k in keys if len({repr(flat.get(k)) for _, flat in rows}) > 1]
        for label, flat in sorted(rows):
            if label in shown:
                shown_values = ", ".join(f"{k}={flat.get(k, '(absent)')}" for k in varying)
                lines.append(f"- {label}: {shown_values}")
    return (
        ["", "Rows of one method with other settings (where they differ):", "", *lines]
        if lines
        else []
    )


def _names(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--baseline", default="ls", help="the method Δm and p compare with (default ls)"
    )
    ap.add_argument(
        "--metrics",
        default=None,
        help="record keys, comma-separated (default: every numeric test/ entry all runs have)",
    )
    ap.add_argument(
        "--seeds",
        default=None,
        type=sweeps.seeds_argument,
        help="the seeds every row must have: 0-9, 0,1,5 (default: every seed any run has)",
    )
    ap.add_argument(
        "--larger", default=None, help="metrics where larger is better, comma-separated"
    )
    ap.add_argument(
        "--smaller", default=None, help="metrics where smaller is better, comma-separated"
    )
    args = ap.parse_args(argv)
    seeds = args.seeds
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"error: {args.sweep_dir} is not a folder (give a sweep's folder)")
    runs, settings_of, left_out, _ = load(args.sweep_dir)
    if runs.empty:
        raise SystemExit(f"error: no finished run with a result under {args.sweep_dir}")
    if seeds is not None:
        outside = ~runs["seed"].astype(int).isin(seeds)
        left_out += [
            (d, f"seed {s} is not one of --seeds {sweeps.seed_text(seeds)}")
            for d, s in zip(runs.loc[outside, "folder"], runs.loc[outside, "seed"])
        ]
        runs = runs[~outside]
    if args.metrics:
        metrics = _names(args.metrics)
        absent = [t for t in metrics if t not in runs]
        if absent:
            have = sorted(c for c in runs if "/" in c)
            raise SystemExit(
                f"error: --metrics {', '.join(absent)}: no run records it; the runs have "
                + ", ".join(have)
            )
    else:
        metrics = sorted(c for c in runs if c.startswith("test/") and runs[c].notna().all())
        if not metrics:
            raise SystemExit(
                "error: the runs share no numeric test/ metric; name some with --metrics"
            )
    missing = runs[list(metrics)].isna().any(axis=1)
    left_out += [
        (d, "lacks " + ", ".join(t for t in metrics if pd.isna(r[t])))
        for d, (_, r) in zip(runs.loc[missing, "folder"], runs[missing].iterrows())
    ]
    runs = runs[~missing]
    if runs.empty:
        raise SystemExit(
            f"error: no run under {args.sweep_dir} is left to compare (--seeds, --metrics): "
            + "; ".join(f"{d}: {why}" for d, why in left_out[:3])
        )
    try:
        signs = {
            t: direction(
                t, sorted(set(runs["module"])), set(_names(args.larger)), set(_names(args.smaller))
            )
            for t in metrics
        }
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    table, base, incomplete = summarise(runs, metrics, signs, args.baseline, seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        write(
            runs,
            table,
            base,
            args.baseline,
            metrics,
            signs,
            settings_of,
            left_out,
            incomplete,
            args.out,
        ),
        end="",
    )
    print(f"{len(runs)} runs; wrote table.md, table.csv, runs.csv to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
