"""The CAGrad / Nash-MTL two-dimensional toy for every combiner: one figure, one table.

    python sweep/toy2d_figure.py multirun/toy2d --run --out docs/figures/toy2d.png

``--run`` first launches the jobs (``train.py -m sweep=toy2d``, then the log-loss combiners on
ℓ + 21, then ``combiner=torchjd`` with each ``--torchjd`` method; a finished job is skipped, so a
re-run only adds what is missing); any further arguments after ``--`` go to every train.py call
(``-- trainer.max_steps=20``). Without ``--run`` the script only reads SWEEP_DIR.

Writes OUT (two panels per combiner: the five paths θ over the contour of the mean loss with the
Pareto set in grey, and the same paths in loss space with the Pareto front in grey; start o,
end *) and, beside it, OUT's stem + ``.md`` / ``.csv``: per combiner and start, the final θ, the
final losses, the distance to the Pareto front (loss space) and to the Pareto set (θ space), the
stationarity g = min_w ‖Σ w_i ∇ℓ_i‖² and the job's wall time. Jobs without a result get a panel
saying why (the last line of their train.log) and a line under the table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python sweep/toy2d_figure.py` finds moo_lightning
from moo_lightning import sweeps  # noqa: E402
from moo_lightning.record import RunRecord  # noqa: E402

# the combiners that assume losses > 0 (logs of the losses; EPO's and PNG's ratios, clamped at
# 1e-12 below): run on ℓ + OFFSET (the toy's losses reach -20). STCH's softmax over the losses
# with ideal point 0 does not change with the shift at equal preference, so it runs as it is.
POSITIVE = ("epo", "famo", "gls", "log_gram", "png", "si_ls")
# Newton solvers whose default stopping rule can miss on this problem (a residual of ~1e-7
# raises with on_failure=raise): run again with on_failure=ls, every fallback counted
NEWTON = ("fairgrad", "nash_mtl")
OFFSET = 21.0
# TorchJD weightings that run with their default arguments (a 2×2 Gram: each is cheap)
TORCHJD = ("UPGrad", "DualProj", "MGDA", "IMTLG", "AlignedMTL", "PCGrad", "GradVac", "Random")
NEAR = 0.05  # a final point this close to the front (loss space) counts as reaching it


def launch(sweep_dir: Path, extra: list[str], torchjd: list[str]) -> None:
    base = [sys.executable, str(ROOT / "train.py"), "-m", "sweep=toy2d"]
    base += [f"hydra.sweep.dir={sweep_dir}", *extra]
    calls = [
        [],
        [f"combiner={','.join(POSITIVE)}", f"module.offset={OFFSET:g}"],
        [f"combiner={','.join(NEWTON)}", "combiner.on_failure=ls"],
    ]
    if torchjd:
        calls.append(["combiner=torchjd", f"combiner.method={','.join(torchjd)}"])
    for args in calls:
        # a failed job (a combiner that refuses this problem) leaves no metrics.json and shows
        # as a panel saying why; the sweep goes on, so the exit code is not checked
        subprocess.run(base + args, cwd=ROOT, check=False)


def label(m: RunRecord) -> str:
    name = m.combiner or "?"  # as the run records it: torchjd[UPGrad], log_gram[mgda]
    if m.get("offset"):
        name += f" (ℓ+{m.get('offset'):g})"
    if ((m.settings or {}).get("combiner") or {}).get("on_failure") == "ls":
        name += f" (on_failure=ls: {m.combiner_fallbacks or 0} fallbacks)"
    return name


def _why(folder: Path) -> str:
    return sweeps.last_error(folder) or "no metrics.json (the job did not finish)"


def _job_name(folder: Path) -> str:
    parts = dict(p.split("=", 1) for p in folder.name.split(",") if "=" in p)
    name = parts.get("combiner", folder.name)
    if name == "torchjd" and "combiner.method" in parts:
        name = f"torchjd[{parts['combiner.method']}]"
    if parts.get("module.offset"):
        name += f" (ℓ+{float(parts['module.offset']):g})"
    if parts.get("combiner.on_failure"):
        name += f" (on_failure={parts['combiner.on_failure']})"
    return name


def load(sweep_dir: Path):
    """(runs: label -> (thetas, losses), rows of the table, left out: label -> why, the kept
    jobs' module.scale values). Records are read by ``moo_lightning.sweeps.load_runs``; a job
    folder without metrics.json but with a log is left out with the log's last error."""
    runs, rows, left_out = {}, [], {}
    for folder in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        if not (folder / "metrics.json").is_file() and any(folder.glob("*.log")):
            left_out[_job_name(folder)] = _why(folder)
    kept, dropped = sweeps.load_runs(sweep_dir, tasks="toy2d")
    for where, why in dropped:
        if why.startswith((sweeps.OTHER_TASK, sweeps.DUPLICATE)):
            continue  # another task's job; a duplicate is the same run, kept once
        if why.startswith(sweeps.NO_RECORD) and _job_name(sweep_dir / where) in left_out:
            continue  # listed above, with its log's error
        m = RunRecord.find(sweep_dir / where)
        left_out[label(m) if m else _job_name(sweep_dir / where)] = why
    scales = set()
    for run in kept:
        m, folder = run.record, run.path
        name = label(m)
        if name in runs:  # combiner=torchjd is torchjd[UPGrad] again: the same run, kept once
            continue
        if not (folder / "trajectory.npz").is_file():
            left_out[name] = "no trajectory.npz"
            continue
        scales.add(float(m.get("scale", 1.0)))
        traj = np.load(folder / "trajectory.npz")
        runs[name] = (traj["thetas"], traj["losses"])
        t = m.task_metrics
        for j, start in enumerate(t["starts"]):
            rows.append(
                {
                    "combiner": name,
                    "start": f"({start[0]:g}, {start[1]:g})",
                    "final_x": t["final_thetas"][j][0],
                    "final_y": t["final_thetas"][j][1],
                    "final_l1": t["final_losses"][j][0],
                    "final_l2": t["final_losses"][j][1],
                    "front_distance": t["front_distance"][j],
                    "set_distance": t["set_distance"][j],
                    "g": t["final_g"][j],
                    "steps": m.steps,
                    "lr": m.settings["optimizer"]["lr"],
                    "wall_time_s": m.wall_time_s,
                }
            )
    return runs, pd.DataFrame(rows), left_out, scales


def write_table(table: pd.DataFrame, left_out: dict, out: Path) -> str:
    table.to_csv(out.with_suffix(".csv"), index=False)
    lines = [
        "# CAGrad / Nash-MTL two-dimensional toy: final points",
        "",
        f"Distances are Euclidean: to the Pareto front in loss space and to the Pareto set in θ "
        f"space (moo_lightning/tasks/toy2d.py); 'reached' counts the starts ending within "
        f"{NEAR} of the front. g = min_w ‖Σ w_i ∇ℓ_i‖² at the final θ.",
        "",
    ]
    if not table.empty:
        steps, lrs = sorted(set(table["steps"])), sorted(set(table["lr"]))
        lines += [f"Adam, lr {', '.join(map(str, lrs))}, {', '.join(map(str, steps))} steps.", ""]
        summary = table.groupby("combiner", sort=True).agg(
            reached=("front_distance", lambda d: f"{int((d < NEAR).sum())}/{len(d)}"),
            worst=("front_distance", "max"),
            wall=("wall_time_s", "first"),
        )
        lines += [
            "| combiner | reached | worst front distance | "
            + " | ".join(f"start {s}" for s in table["start"].unique())
            + " | wall s |",
            "|---|---|---|" + "---|" * table["start"].nunique() + "---|",
        ]
        for name, g in table.groupby("combiner", sort=True):
            s = summary.loc[name]
            cells = [
                f"({r.final_l1:.2f}, {r.final_l2:.2f}) d={r.front_distance:.3f}"
                for r in g.itertuples()
            ]
            lines.append(
                f"| {name} | {s['reached']} | {s['worst']:.3f} | "
                + " | ".join(cells)
                + f" | {s['wall']:.1f} |"
            )
    if left_out:
        lines += ["", f"Without a result ({len(left_out)}):", ""]
        lines += [f"- {name}: {why}" for name, why in sorted(left_out.items())]
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "toy2d.png")
    ap.add_argument("--run", action="store_true", help="launch the jobs first")
    ap.add_argument(
        "--torchjd",
        default=",".join(TORCHJD),
        help="TorchJD methods to run with --run (comma-separated; empty: none)",
    )
    args = ap.parse_args(argv)
    sweep_dir = args.sweep_dir.resolve()
    if args.run:
        launch(sweep_dir, extra, [m for m in args.torchjd.split(",") if m])
    if not sweep_dir.is_dir():
        raise SystemExit(f"error: {sweep_dir} does not exist (run with --run)")
    from moo_lightning.tasks.toy2d import plot_runs

    runs, table, left_out, scales = load(sweep_dir)
    if not runs and not left_out:
        raise SystemExit(f"error: no toy2d jobs under {sweep_dir}")
    notes = dict(left_out)
    if not table.empty:
        for name, g in table.groupby("combiner"):
            notes[name] = (
                f"{int((g['front_distance'] < NEAR).sum())}/{len(g)} starts reach the front"
            )
    panels = {name: runs.get(name) for name in sorted({*runs, *left_out})}
    if len(scales) > 1:
        raise SystemExit(f"error: jobs with different module.scale {sorted(scales)} in one figure")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_runs(panels, args.out, scale=scales.pop() if scales else 1.0, notes=notes)
    print(write_table(table, left_out, args.out))
    print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
