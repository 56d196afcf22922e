"""Pareto-set table for Multi-MNIST, as in Table 1 of Ye & Liu (2022), "Pareto Navigation
Gradient Descent": hypervolume and IGD+ of each method's set of N models, mean ± std over trials.

    python sweep/pareto_report.py SWEEP_DIR --out OUT_DIR

SWEEP_DIR is searched recursively for ``metrics.json``; each one is a job that trained one set of
N models (its members) on Multi-MNIST (two heads, so two objectives) for one trial (its seed).

Writes to OUT_DIR:

- ``table.md`` / ``table.csv``: one row per method (and settings group, below) with the HV and
  IGD+ of the members' test losses and of their test errors (table.md in units of 10⁻², i.e. a
  shown 41.20 is 0.4120; table.csv holds the plain values), the number of trials n, the mean
  non-uniformity μ where the method records one (EPO), and for each of the four numbers the p-value
  of a paired t-test (``scipy.stats.ttest_rel``) against PNG on the seeds both rows have;
- ``runs.csv``: one line per (job, member): preference, test losses, test errors, μ, folder;
- ``loss_space.png``: every member of every trial in test-loss space, one colour and marker per
  row, with the non-dominated front of all points pooled;
and prints the table, which ends with the list of folders left out and why.

Reference points (fixed across methods, so rows are comparable):

- test losses: (ln 10, ln 10) ≈ (2.3026, 2.3026), the cross-entropy of a uniform prediction over
  the 10 digits: a head that has learnt nothing sits there;
- test errors: (0.9, 0.9), the error of guessing among 10 classes at chance.

A member that is not better than the reference in both heads adds nothing to the HV (moocore only
counts the region a point dominates inside the reference box). IGD+ needs a reference front; the
true Pareto front of Multi-MNIST is unknown, so it is the non-dominated set of all rows' points of
all trials pooled, separately for losses and errors: IGD+ is the distance to the best models of
this sweep and changes when rows are added or removed.

HV, IGD+ and the non-dominated filter come from moocore; grouping and averages from pandas.

Which runs are averaged: a row is a method together with everything in ``settings`` except the
trial, i.e. the top-level ``seed`` and any nested ``seed`` that follows it (``${seed}``
interpolations such as ``module.seed``; a nested seed the run's config fixes, ``module.seed=7``,
is a real setting, even in the run of seed 7: ``moo_lightning.sweeps.trial_free``).
Runs of one method whose settings differ otherwise are never averaged: they become separate rows
``method [1]``, ``method [2]``, ... and the settings that tell them apart are listed under the
table. Paired tests use the single PNG row; when there are several PNG rows none is chosen and no
p-value is given. Rows with fewer trials than others are reported with their n and listed.

Left out, and listed with the reason (the rules of ``moo_lightning.sweeps.load_runs``):
unreadable JSON, ``complete`` not true, ``status`` other than "ok", another task, a seed that is
not an integer, malformed fields (shapes that do not match ``members``, non-finite test values, a
NaN written by hand included), no recorded settings, and a second job with the same method, set
size, settings and seed (the first in path order is kept; a run on another world size or at
another precision has other settings).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import moocore
import numpy as np
import pandas as pd

# the checkout's package, so that `python sweep/pareto_report.py` reads records as runs wrote them
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moo_lightning import sweeps  # noqa: E402
from moo_lightning.record import RunRecord  # noqa: E402
from moo_lightning.sweeps import (  # noqa: E402
    is_number,
    paired_p,
    settings_differences,
    trial_free,
)

TASK = "multi_mnist"
BASELINE = "png"
SCALE = 100.0  # table.md shows values in units of 10⁻²
# (columns in the member table, reference point) per objective space
SPACES = {
    "loss": (["loss_1", "loss_2"], (math.log(10), math.log(10))),
    "error": (["error_1", "error_2"], (0.9, 0.9)),
}
METRICS = ["hv_loss", "igd_loss", "hv_error", "igd_error"]
HEADERS = {
    "hv_loss": "HV loss",
    "igd_loss": "IGD+ loss",
    "hv_error": "HV error",
    "igd_error": "IGD+ error",
}
RUN_COLUMNS = [
    "row",
    "method",
    "combiner",
    "seed",
    "member",
    "pref_1",
    "pref_2",
    "loss_1",
    "loss_2",
    "error_1",
    "error_2",
    "mu",
    "folder",
]


# ---------------------------------------------------------------- reading


def _pairs(value, n: int, name: str) -> np.ndarray:
    """``value`` as an (n, 2) array of finite numbers, or ValueError saying what is wrong."""
    ok = (
        isinstance(value, list)
        and len(value) == n
        and all(isinstance(r, list) and len(r) == 2 and all(map(is_number, r)) for r in value)
    )
    if not ok:
        raise ValueError(f"{name} is not {n} rows of 2 finite numbers")
    return np.array(value, dtype=float)


def _parse(m: RunRecord) -> dict:
    """The fields of one finished multi_mnist job's record that the report uses; ValueError(why)
    otherwise (which jobs are finished, of the task and not duplicates: ``sweeps.load_runs``)."""
    n, method = m.get("members"), m.get("method")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"members {n!r} is not a positive integer")
    if not isinstance(method, str) or not method:
        raise ValueError("no method name")
    if not isinstance(m.settings, dict):
        raise ValueError("no settings recorded: cannot tell which runs may be averaged")
    losses = _pairs(m.get("test_losses"), n, "test_losses")
    errors = _pairs(m.get("test_errors"), n, "test_errors")
    prefs = m.get("preferences")
    prefs = np.full((n, 2), np.nan) if prefs is None else _pairs(prefs, n, "preferences")
    mu = m.get("non_uniformity")  # a member's null: non-finite when written; skipped in means
    if mu is None:
        mu = [None] * n
    elif not (isinstance(mu, list) and len(mu) == n) or not all(
        x is None or is_number(x) for x in mu
    ):
        raise ValueError(f"non_uniformity is not {n} numbers (or null)")
    note = m.get("source_note")
    return {
        "method": method,
        "n": n,
        "source_note": note if isinstance(note, str) and note else None,
        "losses": losses,
        "errors": errors,
        "prefs": prefs,
        "mu": np.array([np.nan if x is None else x for x in mu], dtype=float),
    }


def load(sweep_dir: Path) -> tuple[pd.DataFrame, dict, list[tuple[str, str]]]:
    """(members, settings of each (method, group), left out): one row per (job, member) of every
    job kept, and (folder, why) for every metrics.json left out."""
    jobs, left_out = sweeps.load_runs(
        sweep_dir,
        _parse,
        tasks=TASK,
        identity=lambda m, job: (job["method"], job["n"]),
        same="method, settings",
    )
    records, settings_of = [], {}
    for run in jobs:
        job = run.fields
        # the set size counts as a setting even if the settings do not record it
        identity = {**trial_free(run.settings, run.seed), "metrics.members": job["n"]}
        group = json.dumps(identity, sort_keys=True, default=str)
        settings_of[(job["method"], group)] = identity
        for i in range(job["n"]):
            records.append(
                {
                    "method": job["method"],
                    "combiner": run.record.combiner,
                    "group": group,
                    "seed": run.seed,
                    "member": i,
                    "pref_1": job["prefs"][i, 0],
                    "pref_2": job["prefs"][i, 1],
                    "loss_1": job["losses"][i, 0],
                    "loss_2": job["losses"][i, 1],
                    "error_1": job["errors"][i, 0],
                    "error_2": job["errors"][i, 1],
                    "mu": job["mu"][i],
                    "members": job["n"],
                    "source_note": job["source_note"],
                    "folder": run.folder,
                }
            )
    members = pd.DataFrame.from_records(records)
    if not members.empty:
        members = label_rows(members)
    return members, settings_of, left_out


def label_rows(members: pd.DataFrame) -> pd.DataFrame:
    """A ``row`` label and ``variant`` per (method, settings group) (``sweeps.row_labels``)."""
    labels = sweeps.row_labels(zip(members["method"], members["group"]))
    rows = [labels[key] for key in zip(members["method"], members["group"])]
    return members.assign(row=[r for r, _ in rows], variant=[v for _, v in rows])


# ---------------------------------------------------------------- numbers


def pooled_front(points: np.ndarray) -> np.ndarray:
    """The non-dominated points (minimisation) of all ``points``, sorted by the first objective."""
    front = moocore.filter_dominated(np.asarray(points, dtype=float))
    return front[np.argsort(front[:, 0])]


def set_metrics(points: np.ndarray, ref: tuple, front: np.ndarray) -> tuple[float, float]:
    """(HV of ``points`` w.r.t. the reference point ``ref``, IGD+ w.r.t. the set ``front``)."""
    points = np.asarray(points, dtype=float)
    return (
        float(moocore.hypervolume(points, ref=np.asarray(ref, dtype=float))),
        float(moocore.igd_plus(points, ref=front)),
    )


def job_table(members: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One row per job (a trial of a row) with HV and IGD+ of its members in both spaces; and
    the pooled fronts (all rows, all trials) that IGD+ is measured against."""
    fronts = {s: pooled_front(members[cols].to_numpy()) for s, (cols, _) in SPACES.items()}

    def per_job(g: pd.DataFrame) -> pd.Series:
        out = {}
        for space, (cols, ref) in SPACES.items():
            out[f"hv_{space}"], out[f"igd_{space}"] = set_metrics(
                g[cols].to_numpy(), ref, fronts[space]
            )
        return pd.Series(out)

    keys = ["row", "method", "seed", "folder"]
    jobs = members.groupby(keys).apply(per_job, include_groups=False).reset_index()
    return jobs, fronts


def summarise(members: pd.DataFrame, jobs: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """One row per table row: n, seeds, mean and std (ddof 1) of each metric over trials, mean μ
    over members and trials, and the p-values against the baseline row (its label, or None)."""
    agg = {"method": ("method", "first"), "n": ("seed", "size")}
    agg["seeds"] = ("seed", lambda s: " ".join(map(str, sorted(s))))
    for m in METRICS:
        agg[f"{m}_mean"] = (m, "mean")
        agg[f"{m}_std"] = (m, "std")
    table = jobs.groupby("row").agg(**agg)
    table["members"] = members.groupby("row")["members"].first()
    table["mu_mean"] = members.groupby("row")["mu"].mean()
    base_rows = table.index[table["method"].str.lower() == BASELINE]
    baseline = base_rows[0] if len(base_rows) == 1 else None
    for m in METRICS:
        wide = jobs.pivot(index="seed", columns="row", values=m)
        table[f"p_{m}"] = [
            None if baseline is None or row == baseline else paired_p(wide[row], wide[baseline])
            for row in table.index
        ]
    return table, baseline


# ---------------------------------------------------------------- writing


def _cell(mean: float, std: float) -> str:
    s = "—" if pd.isna(std) else f"{SCALE * std:.2f}"
    return f"{SCALE * mean:.2f} ± {s}"


def _p(p) -> str:
    if p is None or pd.isna(p):
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def write_tables(
    members: pd.DataFrame,
    table: pd.DataFrame,
    baseline: str | None,
    fronts: dict,
    settings_of: dict,
    left_out: list,
    out: Path,
) -> None:
    lines = ["# Multi-MNIST: Pareto sets (Ye & Liu 2022, Table 1)", ""]
    notes = members.groupby("source_note")["row"].unique()  # jobs without a note: no key
    if len(notes) == 1:
        lines += [f"Data: {notes.index[0]}.", ""]
    elif len(notes) > 1:
        lines += [f"Data ({', '.join(sorted(rows))}): {note}." for note, rows in notes.items()]
        lines.append("")
    heads = [f"{HEADERS[m]} (×10⁻²)" for m in METRICS]
    p_heads = [f"p {HEADERS[m]}" for m in METRICS]
    cols = ["method", "N", "n", *heads, "μ", *p_heads]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row, r in table.iterrows():
        cells = [row, str(r["members"]), str(r["n"])]
        cells += [_cell(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS]
        cells.append("—" if pd.isna(r["mu_mean"]) else f"{r['mu_mean']:.4f}")
        cells += [_p(r[f"p_{m}"]) for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    (lref, eref) = (SPACES["loss"][1], SPACES["error"][1])
    lines += [
        "",
        "Mean ± std (ddof 1) over trials of each trial's N-model set, in units of 10⁻² "
        "(41.20 means 0.4120); N: models per set; n: trials. "
        + (
            f"p: two-sided paired t-test (scipy.stats.ttest_rel) against {baseline} on the "
            "seeds both rows have; — for the baseline itself and with fewer than 2 pairs; "
            "1 when every paired difference is zero (t is 0/0 there)."
            if baseline
            else "p: — (no single PNG row to pair with)."
        ),
        f"HV reference points, the same for every method: test losses ({lref[0]:.4f}, "
        f"{lref[1]:.4f}) = (ln 10, ln 10), the cross-entropy of a uniform 10-class prediction; "
        f"test errors ({eref[0]}, {eref[1]}), the error of chance among 10 classes. Members "
        "not better than the reference in both heads add nothing to the HV.",
        "IGD+ is measured against the non-dominated set of all rows' members over all trials "
        f"pooled ({len(fronts['loss'])} points for losses, {len(fronts['error'])} for errors): "
        "the true Pareto front is unknown, so this is the best found in this sweep and moves "
        "when rows are added or removed.",
        "μ: non-uniformity of each member's test losses w.r.t. its preference (recorded by EPO), "
        "mean over members and trials; — where a method does not record it.",
    ]
    all_seeds = set(members["seed"])
    short = table[table["n"] < len(all_seeds)]
    if len(short):
        lines += ["", "Rows missing trials (reported with their n):", ""]
        for row, r in short.iterrows():
            have = {int(s) for s in r["seeds"].split()}
            lines.append(
                f"- {row}: seeds {sorted(have)}, missing {sorted(all_seeds - have)} "
                f"of {sorted(all_seeds)}"
            )
    if baseline is None and (table["method"].str.lower() == BASELINE).sum() > 1:
        lines += ["", "Several PNG rows (different settings): no baseline chosen for p-values."]
    groups = members.drop_duplicates("row").set_index("row")
    firsts = groups[groups["variant"] == 1].reset_index().set_index("method")
    later = groups[groups["variant"] > 1]
    if len(later):
        lines += [
            "",
            "Rows of one method with different settings (never averaged together; a nested "
            "seed equal to the trial's seed is the trial, shown as absent):",
            "",
        ]
    for row, g in later.iterrows():
        first = firsts.loc[g["method"]]
        diff = settings_differences(
            settings_of[(g["method"], first["group"])], settings_of[(g["method"], g["group"])]
        )
        lines.append(f"- {row} differs from {first['row']} in: " + "; ".join(diff))
    if left_out:
        lines += ["", f"Left out ({len(left_out)}):", ""]
        lines += [f"- {where}: {why}" for where, why in left_out]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    csv_cols = ["method", "members", "n", "seeds"]
    csv_cols += [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    csv_cols += ["mu_mean", *[f"p_{m}" for m in METRICS]]
    table[csv_cols].rename_axis("row").to_csv(out / "table.csv")


def loss_space_figure(members: pd.DataFrame, front: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = "os^Dv<>pPX*h"
    fig, ax = plt.subplots(figsize=(6, 5))
    for k, (row, g) in enumerate(members.groupby("row")):
        ax.scatter(
            g["loss_1"],
            g["loss_2"],
            s=30,
            marker=markers[k % len(markers)],
            facecolors="none",
            edgecolors=f"C{k % 10}",
            label=f"{row} ({g['seed'].nunique()} trials × {g['members'].iloc[0]} models)",
        )
    ax.plot(front[:, 0], front[:, 1], "k--", lw=1, label="pooled non-dominated front")
    ax.set_xlabel(r"test cross-entropy, head 1 ($\ell_1$)")
    ax.set_ylabel(r"test cross-entropy, head 2 ($\ell_2$)")
    ref = SPACES["loss"][1]
    ax.set_title(
        "Multi-MNIST: members of every trial in test-loss space; "
        f"HV reference ({ref[0]:.3f}, {ref[1]:.3f})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss_space.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    members, settings_of, left_out = load(args.sweep_dir)
    if members.empty:
        listed = "".join(f"\n- {where}: {why}" for where, why in left_out)
        raise SystemExit(f"error: no usable {TASK} jobs under {args.sweep_dir}{listed}")
    args.out.mkdir(parents=True, exist_ok=True)
    members.sort_values(["row", "seed", "member"])[RUN_COLUMNS].to_csv(
        args.out / "runs.csv", index=False
    )
    jobs, fronts = job_table(members)
    table, baseline = summarise(members, jobs)
    write_tables(members, table, baseline, fronts, settings_of, left_out, args.out)
    loss_space_figure(members, fronts["loss"], args.out)
    print((args.out / "table.md").read_text())
    print(
        f"{len(jobs)} jobs, {len(members)} models; wrote table.md, table.csv, runs.csv, "
        f"loss_space.png to {args.out}"
    )


if __name__ == "__main__":
    main()
