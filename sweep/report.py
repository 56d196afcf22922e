"""Aggregate a sweep into the seed paper's Table 1, a per-run CSV and figures.

    python sweep/report.py MULTIRUN_DIR --out OUT_DIR [--wandb [--project P] [--entity E]]

For every (task, N, loss) the hyperparameters (τ, λ, preference) with the best mean validation
accuracy over seeds are chosen among the groups that have every seed of the sweep; their test
accuracy (mean ± std over seeds) goes in the table, with a paired t-test against the chosen CE
baseline on the seeds both have. Groups missing seeds are listed as incomplete and never averaged.
Writes OUT_DIR/table.md, table.csv, runs.csv, loss_space.png and (when runs saved test
embeddings, module.save_test_embeddings=true) tsne.png. --wandb also logs Table 1 (a wandb.Table
"table1"), the figures (images) and the report's files (an artifact of type "report") to a W&B
run of job type "report" (WANDB_MODE=offline: a local run in OUT_DIR/wandb, `wandb sync` later).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

LOSS_NAMES = {"ce": "CE", "ce_scl": "CE+SCL"}


def loss_name(run: dict) -> str:
    objective = run["objective"]
    if objective in LOSS_NAMES:
        return LOSS_NAMES[objective]
    # one combiner name per run ("combiner"; runs written before that said "combiner_used")
    return f"CE+{(run.get('combiner_used') or run['combiner']).upper()}"


def _group_key(settings: dict) -> str:
    """Everything that defines a run but its seed: runs are averaged only when this matches."""
    rest = {k: v for k, v in settings.items() if k != "seed"}
    if isinstance(rest.get("data"), dict):
        rest["data"] = {k: v for k, v in rest["data"].items() if k != "seed"}
    return json.dumps(rest, sort_keys=True, default=str)


def load_runs(sweep_dir: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """The runs with a result, and (folder, why) for every metrics.json left out: unreadable,
    incomplete, without a result (diverged, no steps, never validated), or a duplicate of a run
    with the same settings and seed."""
    runs, left_out, seen = [], [], {}
    for path in sorted(sweep_dir.rglob("metrics.json")):
        where = str(path.parent.relative_to(sweep_dir))
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            left_out.append((where, f"unreadable metrics.json ({type(err).__name__})"))
            continue
        if not isinstance(m, dict) or not m.get("complete"):
            left_out.append((where, "incomplete (the job did not finish)"))
            continue
        status = m.get("status", "ok")
        if status != "ok":
            left_out.append((where, f"status {status}: {m.get('status_reason', '')}"))
            continue
        if "test/acc" not in m or "val/acc_best" not in m:
            left_out.append((where, "no validation/test accuracy (not a text-classification run)"))
            continue
        cfg = m.get("settings")
        if cfg is None:  # runs written before settings were recorded in metrics.json
            cfg_path = path.parent / ".hydra" / "config.yaml"
            cfg = yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else {}
        identity = (m["task"], m.get("num_train"), loss_name(m), str(m.get("preference")))
        key = (_group_key(cfg), identity, m["seed"])
        if key in seen:
            left_out.append((where, f"duplicate of {seen[key]} (same settings and seed)"))
            continue
        seen[key] = where
        objective = cfg.get("objective") or {}
        pref = m.get("preference") or []
        losses = m.get("final_train_losses") or []
        runs.append(
            {
                "dir": where,
                "task": m["task"],
                "N": m.get("num_train"),
                "loss": loss_name(m),
                "seed": m["seed"],
                "temperature": objective.get("temperature"),
                "lam": objective.get("lam"),
                "r1": round(pref[0], 6) if len(pref) == 2 else None,
                "val_acc_best": m.get("val/acc_best"),
                "test_acc": m.get("test/acc"),
                "l1": losses[0] if len(losses) == 2 else None,
                "l2": losses[1] if len(losses) == 2 else None,
                "skipped_steps": m.get("skipped_steps"),
                "wall_time_s": m.get("wall_time_s"),
                "setup_s": (m.get("timing_s") or {}).get("setup"),
                "fallbacks": m.get("combiner_fallbacks"),
                "encoder": m.get("encoder", m.get("model")),  # "model" before 0.2
                "group": _group_key(cfg),
            }
        )
    return runs, left_out


def hyper(run: dict) -> tuple:
    """The swept hyperparameters shown in the table, then every other setting (runs that differ
    in anything but the seed are never averaged together)."""
    return (run["temperature"], run["lam"], run["r1"], run["group"])


def choose(runs: list[dict]):
    """Per (task, N, loss): the complete hyperparameter group with the best mean val accuracy;
    also the incomplete groups."""
    seeds_of = defaultdict(set)
    for r in runs:
        seeds_of[(r["task"], r["N"])].add(r["seed"])
    groups = defaultdict(list)
    for r in runs:
        groups[(r["task"], r["N"], r["loss"], hyper(r))].append(r)
    chosen, incomplete = {}, []
    for (task, n, loss, h), members in groups.items():
        expected = seeds_of[(task, n)]
        have = {m["seed"] for m in members}
        if have != expected:
            incomplete.append((task, n, loss, h, sorted(have), sorted(expected)))
            continue
        val = np.mean([m["val_acc_best"] for m in members])
        best = chosen.get((task, n, loss))
        if best is None or val > best[0]:
            chosen[(task, n, loss)] = (val, h, sorted(members, key=lambda m: m["seed"]))
    return chosen, incomplete


def paired_p(members: list[dict], baseline: list[dict]) -> float | None:
    a = {m["seed"]: m["test_acc"] for m in members}
    b = {m["seed"]: m["test_acc"] for m in baseline}
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    x, y = np.array([a[s] for s in common]), np.array([b[s] for s in common])
    if np.allclose(x, y):
        return 1.0
    return float(stats.ttest_rel(x, y).pvalue)


def write_tables(chosen, incomplete, out: Path, left_out=()) -> None:
    tasks = sorted({k[0] for k in chosen})
    rows = sorted({(k[2], k[1]) for k in chosen}, key=lambda r: (r[1] or 0, r[0] != "CE", r[0]))
    csv_rows = []
    lines = ["| loss | N | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
    for loss, n in rows:
        cells = []
        for task in tasks:
            entry = chosen.get((task, n, loss))
            if entry is None:
                cells.append("—")
                continue
            val, h, members = entry
            acc = np.array([m["test_acc"] for m in members])
            base = chosen.get((task, n, "CE"))
            p = None if loss == "CE" or base is None else paired_p(members, base[2])
            std = acc.std(ddof=1) if len(acc) > 1 else 0.0
            p_text = "" if p is None else f", p={p:.3f}"
            cells.append(f"{100 * acc.mean():.1f} ± {100 * std:.1f} (n={len(acc)}{p_text})")
            csv_rows.append(
                {
                    "task": task,
                    "N": n,
                    "loss": loss,
                    "temperature": h[0],
                    "lam": h[1],
                    "r1": h[2],
                    "seeds": len(acc),
                    "test_acc_mean": acc.mean(),
                    "test_acc_std": std,
                    "val_acc_mean": val,
                    "p_vs_ce_paired_t": p,
                }
            )
        lines.append(f"| {loss} | {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Test accuracy (%) of the hyperparameters with the best mean validation accuracy, "
        "mean ± std over seeds; p: paired t-test against CE on the same seeds.",
    ]
    skipped = [
        (m["dir"], m["skipped_steps"])
        for _, _, members in chosen.values()
        for m in members
        if m.get("skipped_steps")
    ]
    lines.append(
        f"Steps skipped for non-finite values in the runs above: {sum(n for _, n in skipped)}"
        + (" (" + ", ".join(f"{d}: {n}" for d, n in skipped) + ")" if skipped else "")
        + "."
    )
    if incomplete:
        lines += ["", "Incomplete groups (left out of the table):", ""]
        for task, n, loss, h, have, expected in sorted(incomplete, key=str):
            lines.append(
                f"- {task} N={n} {loss} τ={h[0]} λ={h[1]} r1={h[2]}: seeds {have} of {expected}"
            )
    if left_out:
        lines += ["", f"Runs left out ({len(left_out)}):", ""]
        lines += [f"- {where}: {why}" for where, why in left_out]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    with open(out / "table.csv", "w", newline="") as f:
        fields = list(csv_rows[0]) if csv_rows else ["task"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(csv_rows)


def loss_space_figure(runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import moocore

    pts = [r for r in runs if r["l1"] is not None and r["l2"] is not None]
    if not pts:
        return
    allp = np.array([[r["l1"], r["l2"]] for r in pts])
    ref = allp.max(0) * 1.05
    fig, ax = plt.subplots(figsize=(6, 5))
    # one series per combiner, and per preference when the sweep has several; distinct hollow
    # markers keep series that land on the same points (e.g. PNG far from the front = MGDA) visible
    several_r1 = len({r["r1"] for r in pts}) > 1
    series = sorted({(r["loss"], r["r1"] if several_r1 else None) for r in pts}, key=str)
    markers = "osD^vx+*"
    for k, (loss, r1) in enumerate(series):
        sel = np.array(
            [[r["l1"], r["l2"]] for r in pts if r["loss"] == loss and (r1 is None or r["r1"] == r1)]
        )
        hv = moocore.hypervolume(sel, ref=ref)
        name = loss if r1 is None else f"{loss} r1={r1}"
        marker = markers[k % len(markers)]
        filled = marker in "x+"
        ax.scatter(
            sel[:, 0],
            sel[:, 1],
            s=36 - 3 * (k % len(markers)),
            marker=marker,
            facecolors=f"C{k}" if filled else "none",
            edgecolors=f"C{k}",
            label=f"{name} (HV {hv:.4f})",
        )
    ax.set_xlabel(r"final $\ell_1$ (train)")
    ax.set_ylabel(r"final $\ell_2$ (train)")
    ax.set_title(
        f"final losses per run; HV reference point ({ref[0]:.3f}, {ref[1]:.3f})", fontsize=9
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss_space.png", dpi=120)
    plt.close(fig)


def tsne_figure(chosen, sweep_dir: Path, out: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    panels = []
    for (task, n, loss), (_, _, members) in sorted(chosen.items()):
        if loss not in ("CE+LS", "CE+EPO", "CE+SCL"):
            continue
        path = sweep_dir / members[0]["dir"] / "test_embeddings.npz"
        if path.exists():
            panels.append((f"{loss} ({task}, N={n}, seed {members[0]['seed']})", np.load(path)))
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (title, data) in zip(axes[0], panels):
        emb = TSNE(
            n_components=2, random_state=0, init="pca", perplexity=min(30, len(data["labels"]) - 1)
        ).fit_transform(data["features"])
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
    fig.savefig(out / "tsne.png", dpi=120)
    plt.close(fig)
    return True


def _cell(text: str):
    """A table.csv cell as a number when it is one (empty: no value)."""
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number


def log_to_wandb(out: Path, sweep_dir: Path, project: str, entity: str | None = None) -> str:
    """Table 1, the figures and the report's files into one W&B run; returns the run's folder
    (offline) or URL. Refuses an online run without an API key, in one line (ValueError)."""
    # the repository root, so that `python sweep/report.py` finds moo_lightning
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
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
        for figure in ("loss_space.png", "tsne.png"):
            if (out / figure).is_file():
                logged[Path(figure).stem] = wandb.Image(str(out / figure))
        run.log(logged)
        run.summary["table1_rows"] = len(rows)
        artifact = wandb.Artifact(f"report-{name}", type="report")
        for file in ("table.md", "table.csv", "runs.csv", "loss_space.png", "tsne.png"):
            if (out / file).is_file():
                artifact.add_file(str(out / file))
        run.log_artifact(artifact)
        where = Path(run.dir).parent if run.offline else run.url  # offline: the run folder
    finally:
        run.finish()
    return str(where)


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--wandb", action="store_true", help="also log the report to a W&B run")
    ap.add_argument("--project", default="moo-lightning", help="W&B project (with --wandb)")
    ap.add_argument("--entity", default=None, help="W&B entity (with --wandb)")
    args = ap.parse_args(argv)
    runs, left_out = load_runs(args.sweep_dir)
    if not runs:
        raise SystemExit(f"error: no complete text-classification runs under {args.sweep_dir}")
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in runs[0] if k != "group"])
        writer.writeheader()
        writer.writerows({k: v for k, v in r.items() if k != "group"} for r in runs)
    chosen, incomplete = choose(runs)
    write_tables(chosen, incomplete, args.out, left_out)
    loss_space_figure(runs, args.out)
    has_tsne = tsne_figure(chosen, args.sweep_dir, args.out)
    print((args.out / "table.md").read_text())
    print(
        f"{len(runs)} runs; wrote table.md, table.csv, runs.csv, loss_space.png"
        + (", tsne.png" if has_tsne else " (no test embeddings: no tsne.png)")
        + f" to {args.out}"
    )
    if args.wandb:
        try:
            where = log_to_wandb(args.out, args.sweep_dir, args.project, args.entity)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        print(f"W&B run: {where}")


if __name__ == "__main__":
    main()
