"""Validation curves of the budget study (validation accuracy against optimizer steps), and the
step budget and learning rate they support. Validation only: the study's runs never touch test.

    python sweep/budget_curves.py multirun/budget_study --out reports/budget_study

Reads every complete run's ``val_history`` (metrics.json; runs left out by the rules of
``moo_lightning.sweeps.load_runs`` are printed with the reason)
and writes OUT/curves.png (one panel per loss: each seed thin, the seed mean bold, per learning
rate), OUT/curves.csv (the mean curves) and OUT/summary.md. The rule (written when only two CE
curves had been seen, validation only): for each (loss, lr) the *plateau step* is the first
validation step at which the seed-mean curve comes within ``--tolerance`` (default one accuracy
point) of its maximum; the recommended budget is CE's plateau step at the chosen learning rate,
rounded up to a multiple of the validation interval.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

# the checkout's package, so that `python sweep/budget_curves.py` reads records as runs wrote them
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moo_lightning import sweeps  # noqa: E402
from moo_lightning.record import RunRecord  # noqa: E402


def _history(m: RunRecord) -> list:
    history = m.get("val_history")
    if not history:
        raise ValueError("no validation history (val_history)")
    return history


def load_curves(sweep_dir: Path) -> pd.DataFrame:
    """One row per (run, validation): loss, lr, seed, step, val_acc; the runs left out (the
    rules of ``moo_lightning.sweeps.load_runs``) are printed with the reason."""
    kept, left_out = sweeps.load_runs(
        sweep_dir, _history, identity=lambda m, _: sweeps.loss_name(m)
    )
    for where, why in left_out:
        print(f"left out: {where}: {why}")
    rows = []
    for run in kept:
        loss = sweeps.loss_name(run.record)
        for step, acc in run.fields:
            rows.append(
                {
                    "loss": loss,
                    "lr": float(run.settings["optimizer"]["lr"]),
                    "seed": run.seed,
                    "step": int(step),
                    "val_acc": float(acc),
                }
            )
    if not rows:
        raise SystemExit(f"{sweep_dir}: no complete run with a validation history")
    return pd.DataFrame(rows)


def mean_curves(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["loss", "lr", "step"])["val_acc"]
    return g.agg(mean="mean", std="std", seeds="count").reset_index()


def plateau_step(curve: pd.DataFrame, tolerance: float) -> int:
    best = curve["mean"].max()
    return int(curve.loc[curve["mean"] >= best - tolerance, "step"].min())


def summarise(curves: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    rows = []
    for (loss, lr), c in curves.groupby(["loss", "lr"]):
        c = c.sort_values("step")
        rows.append(
            {
                "loss": loss,
                "lr": lr,
                "seeds": int(c["seeds"].min()),
                "max_mean_val_acc": float(c["mean"].max()),
                "argmax_step": int(c.loc[c["mean"].idxmax(), "step"]),
                "plateau_step": plateau_step(c, tolerance),
                "final_mean_val_acc": float(c["mean"].iloc[-1]),
            }
        )
    return pd.DataFrame(rows)


def figure(df: pd.DataFrame, curves: pd.DataFrame, out: Path) -> None:
    """One panel per loss: each seed's curve (thin) and the seed mean (bold), per learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = sorted(curves["loss"].unique())
    fig, axes = plt.subplots(1, len(losses), figsize=(5.5 * len(losses), 4), sharey=True)
    axes = [axes] if len(losses) == 1 else list(axes)
    for ax, loss in zip(axes, losses):
        for k, (lr, c) in enumerate(curves[curves["loss"] == loss].groupby("lr")):
            c = c.sort_values("step")
            color = f"C{k}"
            runs = df[(df["loss"] == loss) & (df["lr"] == lr)]
            for _, seed in runs.groupby("seed"):
                seed = seed.sort_values("step")
                ax.plot(seed["step"], seed["val_acc"], color=color, lw=0.7, alpha=0.35)
            n = int(c["seeds"].min())
            ax.plot(c["step"], c["mean"], color=color, lw=2, label=f"lr {lr:g} (mean of {n})")
        ax.set_title(f"{loss}: validation accuracy (thin: seeds)")
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("validation accuracy")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=1e-5, help="the learning rate to budget for")
    parser.add_argument("--interval", type=int, default=25, help="validation interval (steps)")
    args = parser.parse_args()
    df = load_curves(args.sweep_dir)
    curves = mean_curves(df)
    summary = summarise(curves, args.tolerance)
    args.out.mkdir(parents=True, exist_ok=True)
    curves.to_csv(args.out / "curves.csv", index=False)
    figure(df, curves, args.out / "curves.png")
    ce = summary[(summary["loss"] == "CE") & (summary["lr"] == args.lr)]
    lines = [
        f"Validation-only budget study ({args.sweep_dir}); plateau = first step within "
        f"{args.tolerance:g} of the seed-mean curve's maximum.",
        "",
        summary.to_markdown(index=False, floatfmt=".4g"),
        "",
    ]
    if len(ce):
        step = plateau_step(curves[(curves["loss"] == "CE") & (curves["lr"] == args.lr)], 0)
        plateau = int(ce["plateau_step"].iloc[0])
        budget = args.interval * math.ceil(plateau / args.interval)
        lines.append(
            f"CE at lr {args.lr:g}: plateau at step {plateau} (maximum at step {step}); "
            f"recommended budget {budget} steps."
        )
    text = "\n".join(lines)
    (args.out / "summary.md").write_text(text + "\n")
    print(text)
    print(f"wrote {args.out}/curves.png, curves.csv, summary.md")


if __name__ == "__main__":
    main()
