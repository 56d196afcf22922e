"""The Table 2 analogue of a domain-generalisation sweep (Ye & Liu, PNG, Table 2): test accuracy
on each held-out target domain and their average, mean ± std over trials, a paired t-test of
each method against JiGen (pairs: the same target and trial seed), and a per-step picture of
what PNG did (λ, the criterion F, both losses) from one JiGen + PNG run's CSV log.

    python sweep/dg_report.py multirun/dg_rmnist --out reports/dg_rmnist

Writes ``table.md`` (the source note of the data on top: a stand-in says so), ``table.csv``,
``runs.csv`` (one line per job) and ``png_steps.png`` (when a PNG run with a CSV log exists).
Jobs left out (unfinished, status not ok, malformed, duplicates: the rules of
``moo_lightning.sweeps.load_runs``) are listed. p: ``moo_lightning.sweeps.paired_p`` (1 when
every difference is zero, scipy's p otherwise; before, a constant difference gave none)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# the checkout's package, so that `python sweep/dg_report.py` reads records as runs wrote them
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moo_lightning import sweeps  # noqa: E402
from moo_lightning.record import RunRecord  # noqa: E402
from moo_lightning.sweeps import is_number, paired_p  # noqa: E402

ORDER = ["deepall", "jigen", "jigen_adv", "jigen_png"]
NAMES = {
    "deepall": "DeepAll",
    "jigen": "JiGen",
    "jigen_adv": "JiGen + adv",
    "jigen_png": "JiGen + PNG",
}
BASELINE = "jigen"


def _parse(m: RunRecord) -> dict:
    """A domain-generalisation job's fields (method, target, finite test accuracy); ValueError
    otherwise."""
    if m.get("method") is None or "target" not in m:
        raise ValueError(f"{sweeps.OTHER_TASK}domain-generalisation job (no method or target)")
    if not is_number(m.get("test/acc")):
        raise ValueError(f"test/acc {m.get('test/acc')!r} is not a finite number")
    return {"method": m.get("method"), "target": str(m.get("target"))}


def load(sweep_dir: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(one row per kept job: method, target, seed, acc, val_acc, folder; source notes; the
    jobs left out, 'folder: why', by the rules of ``moo_lightning.sweeps.load_runs``; records
    that are no domain-generalisation job are passed over in silence)"""
    kept, left_out = sweeps.load_runs(
        sweep_dir, _parse, identity=lambda m, job: (job["method"], job["target"])
    )
    rows, notes = [], []
    for run in kept:
        m = run.record
        notes.append(str(m.get("source_note")))
        rows.append(
            {
                **run.fields,
                "seed": m.seed,
                "acc": float(m.get("test/acc")),
                "val_acc": m.get("val/acc_best"),
                "wall_s": m.wall_time_s,
                "folder": str(run.path),
            }
        )
    skipped = [
        f"{where}: {why}" for where, why in left_out if not why.startswith(sweeps.OTHER_TASK)
    ]
    return pd.DataFrame(rows), sorted(set(notes)), skipped


def _target_key(t: str):
    return (0, int(t)) if t.lstrip("-").isdigit() else (1, t)


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per method: mean and std over trials of the accuracy per target and of the
    average over targets (per trial seed), n trials, and the paired p against JiGen."""
    targets = sorted(runs["target"].unique(), key=_target_key)
    methods = [m for m in ORDER if m in set(runs["method"])]
    methods += sorted(set(runs["method"]) - set(methods))
    base = runs[runs["method"] == BASELINE].set_index(["target", "seed"])["acc"]
    out = []
    for method in methods:
        sub = runs[runs["method"] == method]
        row = {"method": method, "name": NAMES.get(method, method)}
        for t in targets:
            acc = sub[sub["target"] == t]["acc"]
            row[f"{t}_mean"], row[f"{t}_std"] = acc.mean(), acc.std(ddof=1)
        # the average over targets, per trial (only trials that cover every target)
        per_seed = sub.pivot_table(index="seed", columns="target", values="acc")
        per_seed = per_seed.reindex(columns=targets).dropna()
        avg = per_seed.mean(axis=1)
        row["avg_mean"], row["avg_std"], row["n"] = avg.mean(), avg.std(ddof=1), len(avg)
        mine = sub.set_index(["target", "seed"])["acc"]
        row["p_vs_jigen"] = None if method == BASELINE else paired_p(mine, base)
        out.append(row)
    return pd.DataFrame(out)


def _cell(mean, std) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    return f"{100 * mean:.2f}" + ("" if not np.isfinite(std) else f" ± {100 * std:.2f}")


def write_table(tab: pd.DataFrame, targets: list[str], notes: list[str], out: Path) -> str:
    head = ["method", *[f"{t}" for t in targets], "average", "n", "p vs JiGen"]
    lines = [
        "Test accuracy (%) on each held-out target domain, mean ± std over trials; average = "
        "the mean over targets of each trial. p: paired t-test against JiGen over "
        "(target, trial) pairs.",
        "",
        *[f"Data: {n}" for n in notes],
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for _, r in tab.iterrows():
        p = r["p_vs_jigen"]
        cells = [r["name"], *[_cell(r[f"{t}_mean"], r[f"{t}_std"]) for t in targets]]
        cells += [_cell(r["avg_mean"], r["avg_std"]), str(int(r["n"]))]
        cells.append("–" if p is None or pd.isna(p) else f"{p:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    tab.to_csv(out / "table.csv", index=False)
    return text


def png_figure(runs: pd.DataFrame, out: Path) -> Path | None:
    """λ_1, λ_2, the criterion F and both training losses per step of the first JiGen + PNG
    run (lowest seed, first target) that kept a CSV log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = runs[runs["method"] == "jigen_png"].sort_values(["seed", "target"])
    for folder in png["folder"]:
        log = Path(folder) / "csv" / "metrics.csv"
        if not log.is_file():
            continue
        df = pd.read_csv(log)
        steps = df.dropna(subset=["train/loss_0"])
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
        for i, name in enumerate(("ℓ1 object", "ℓ2 jigsaw")):
            axes[0].plot(steps["step"], steps[f"train/loss_{i}"], label=name, lw=0.8)
            axes[1].plot(
                steps["step"], steps[f"train/combiner/lambda_{i}"], label=f"λ{i + 1}", lw=0.8
            )
        axes[2].plot(steps["step"], steps["train/criterion"], label="F(θ)", lw=0.8)
        if "train/discriminator_loss" in steps:
            axes[2].plot(steps["step"], steps["train/discriminator_loss"], label="L_D", lw=0.8)
        titles = ("training losses", "PNG's dual weights λ", "criterion F and D's loss")
        for ax, title in zip(axes, titles):
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.legend(fontsize=8)
        m = RunRecord.read(folder, strict=False)
        fig.suptitle(
            f"JiGen + PNG, target {m.get('target')}, seed {m.seed} — {m.get('source_note')}",
            fontsize=8,
        )
        fig.tight_layout()
        path = out / "png_steps.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("reports/dg"))
    args = parser.parse_args(argv)
    runs, notes, skipped = load(args.sweep_dir)
    if runs.empty:
        raise SystemExit(f"{args.sweep_dir}: no finished domain-generalisation job")
    args.out.mkdir(parents=True, exist_ok=True)
    runs.sort_values(["method", "target", "seed"]).to_csv(args.out / "runs.csv", index=False)
    targets = sorted(runs["target"].unique(), key=_target_key)
    print(write_table(table(runs), targets, notes, args.out))
    fig = png_figure(runs, args.out)
    if fig:
        print(f"figure: {fig}")
    for s in skipped:
        print(f"left out: {s}")


if __name__ == "__main__":
    main()
