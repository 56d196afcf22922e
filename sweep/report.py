"""Aggregate a sweep into the seed paper's Table 1, a per-run CSV and figures.

    python sweep/report.py MULTIRUN_DIR --out OUT_DIR [--wandb [--project P] [--entity E]]

Runs are read into a pandas frame, one row per run with its recorded settings. A setting that
differs between runs of one (task, N, loss) other than the seed and the hyperparameters chosen
by validation (an encoder, a learning rate, a combiner option) is a column of the tables: such
runs are separate rows, never averaged together and never chosen between; a few settings the
whole sweep shares (encoder, optimizer, lr, batch, budget, data) are named once under the table.
For every row the hyperparameters (τ, λ, preference) with the best mean validation accuracy
over seeds are chosen among the groups that have every seed of the sweep; their test accuracy
(mean ± std over seeds) goes in the table, with a paired t-test against the chosen CE row (with
the same distinguishing settings) on the seeds both have. Groups missing seeds are listed as
incomplete and never averaged.
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
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

LOSS_NAMES = {"ce": "CE", "ce_scl": "CE+SCL"}


def loss_name(run: dict) -> str:
    objective = run["objective"]
    if objective in LOSS_NAMES:
        return LOSS_NAMES[objective]
    # one combiner name per run ("combiner"; runs written before that said "combiner_used")
    return f"CE+{(run.get('combiner_used') or run['combiner']).upper()}"


# settings chosen per (task, N, loss) by validation, and settings that are a row's identity or
# vary over seeds: none of them distinguishes rows of a table
SELECTED = ("objective.temperature", "objective.lam", "preference")
NOT_DISTINGUISHING = ("seed", "data.seed", "task_name", "data.num_train")
# settings named under the table when the whole sweep shares them
SHARED_SHOWN = (
    "encoder.name",
    "optimizer._target_",
    "optimizer.lr",
    "data.batch_size",
    "trainer.max_steps",
    "trainer.val_check_interval",
    "scheduler._target_",
    "data.path",
)


def flat_settings(settings: dict) -> dict:
    """Nested settings as dotted keys; values as text (lists and numbers compare as written)."""
    flat = pd.json_normalize(settings or {}, sep=".").to_dict("records")
    return {k: _text(v) for k, v in (flat[0] if flat else {}).items()}


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def load_runs(sweep_dir: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The runs with a result (one row each, their settings as ``setting:<dotted key>``
    columns), and (folder, why) for every metrics.json left out: unreadable, incomplete,
    without a result (diverged, no steps, never validated), or a duplicate of a run with the
    same settings and seed."""
    rows, left_out = [], []
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
        objective = cfg.get("objective") or {}
        pref = m.get("preference") or []
        losses = m.get("final_train_losses") or []
        rows.append(
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
                "preference_text": str(m.get("preference")),
                **{f"setting:{k}": v for k, v in flat_settings(cfg).items()},
            }
        )
    runs = pd.DataFrame(rows)
    if runs.empty:
        return runs, left_out
    # N stays an integer; "all" for runs on the whole training set (data.num_train=null)
    runs["N"] = pd.Series([r["N"] if r["N"] is not None else "all" for r in rows], dtype=object)
    settings = [c for c in runs.columns if c.startswith("setting:")]
    runs[settings] = runs[settings].fillna("—")  # a setting a run does not have
    # one result per (settings, seed): later copies are listed, never averaged twice
    identity = ["task", "N", "loss", "preference_text", "seed", *settings]
    twice = runs.duplicated(identity, keep="first")
    first_of = runs[~twice].set_index(identity)["dir"]
    for _, dup in runs[twice].iterrows():
        first = first_of.loc[tuple(dup[identity])]
        left_out.append((dup["dir"], f"duplicate of {first} (same settings and seed)"))
    return runs[~twice].reset_index(drop=True), left_out


def distinguishing(runs: pd.DataFrame) -> list[str]:
    """The settings that tell apart runs of one (task, N, loss) beyond the hyperparameters
    chosen by validation and the seed: each becomes a column, so two rows of a table never
    look alike and runs that differ in anything but the seed are never averaged together."""
    skip = {f"setting:{k}" for k in (*SELECTED, *NOT_DISTINGUISHING)}
    settings = [c for c in runs.columns if c.startswith("setting:") and c not in skip]
    if not settings:
        return []
    varying = runs.groupby(["task", "N", "loss"], sort=False)[settings].nunique().max()
    return [c for c in settings if varying[c] > 1]


def shared_settings(runs: pd.DataFrame) -> dict[str, str]:
    """A few telling settings the whole sweep shares (named once under the table)."""
    out = {}
    for key in SHARED_SHOWN:
        column = runs.get(f"setting:{key}")
        if column is not None and column.nunique() == 1 and column.iloc[0] != "—":
            out[key] = column.iloc[0]
    return out


def choose(runs: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per table row (task, N, loss and the distinguishing ``keys``): the hyperparameter group
    (τ, λ, r1) with every seed of its (task, N) and the best mean validation accuracy. Returns
    (chosen groups, incomplete groups); each group carries its runs sorted by seed."""
    row = ["task", "N", "loss", *keys]
    group = [*row, "temperature", "lam", "r1"]
    expected = runs.groupby(["task", "N"], sort=False)["seed"].agg(lambda s: sorted(set(s)))
    groups = (
        runs.sort_values("seed", kind="stable")
        .groupby(group, dropna=False, sort=False)
        .agg(
            seeds=("seed", list),
            val=("val_acc_best", "mean"),
            members=("dir", list),
        )
        .reset_index()
    )
    groups["expected"] = [expected.loc[(t, n)] for t, n in zip(groups["task"], groups["N"])]
    complete = groups["seeds"].map(sorted) == groups["expected"]
    # the best mean validation per row; ties keep the group met first (folder order)
    chosen = (
        groups[complete]
        .sort_values("val", ascending=False, kind="stable")
        .groupby(row, sort=False)
        .head(1)
        .reset_index(drop=True)
    )
    return chosen, groups[~complete].reset_index(drop=True)


def paired_p(a: pd.Series, b: pd.Series) -> float | None:
    """Paired t-test of test accuracies indexed by seed, on the seeds both have."""
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    if len(both) < 2:
        return None
    x, y = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
    if np.allclose(x, y):
        return 1.0
    return float(stats.ttest_rel(x, y).pvalue)


def _accuracies(runs: pd.DataFrame, members: list[str]) -> pd.Series:
    return runs.set_index("dir").loc[members].set_index("seed")["test_acc"]


def _baseline(chosen: pd.DataFrame, entry: pd.Series, keys: list[str]) -> pd.Series | None:
    """The chosen CE row of the entry's (task, N), matched on the distinguishing keys that
    tell CE rows apart (an encoder, say); None when that leaves no single CE row."""
    ce = chosen[(chosen["loss"] == "CE") & (chosen["task"] == entry["task"])]
    ce = ce[ce["N"] == entry["N"]]
    for key in keys:
        if ce[key].nunique() > 1:
            ce = ce[ce[key] == entry[key]]
    return ce.iloc[0] if len(ce) == 1 else None


def _column(key: str) -> str:
    return key.removeprefix("setting:")


def write_tables(runs, chosen, incomplete, keys, out: Path, left_out=()) -> None:
    """table.md (Table 1: a row per loss, N and distinguishing setting, a column per task),
    table.csv (a row per chosen group) and the lists of what was left out."""
    tasks = sorted(chosen["task"].unique())
    cells, csv_rows = {}, []
    for _, entry in chosen.iterrows():
        acc = _accuracies(runs, entry["members"])
        base = None if entry["loss"] == "CE" else _baseline(chosen, entry, keys)
        p = None if base is None else paired_p(acc, _accuracies(runs, base["members"]))
        std = acc.std(ddof=1) if len(acc) > 1 else 0.0
        p_text = "" if p is None else f", p={p:.3f}"
        row = (entry["loss"], entry["N"], *(entry[k] for k in keys))
        cells[(row, entry["task"])] = (
            f"{100 * acc.mean():.1f} ± {100 * std:.1f} (n={len(acc)}{p_text})"
        )
        csv_rows.append(
            {
                "task": entry["task"],
                "N": entry["N"],
                "loss": entry["loss"],
                **{_column(k): entry[k] for k in keys},
                "temperature": entry["temperature"],
                "lam": entry["lam"],
                "r1": entry["r1"],
                "seeds": len(acc),
                "test_acc_mean": acc.mean(),
                "test_acc_std": std,
                "val_acc_mean": entry["val"],
                "p_vs_ce_paired_t": p,
            }
        )
    rows = sorted(
        {row for row, _ in cells},
        key=lambda r: (_order(r[1]), r[0] != "CE", r[0], *map(str, r[2:])),
    )
    head = ["loss", "N", *(_column(k) for k in keys), *tasks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        values = [*map(str, row), *(cells.get((row, t), "—") for t in tasks)]
        lines.append("| " + " | ".join(values) + " |")
    lines += [
        "",
        "Test accuracy (%) of the hyperparameters with the best mean validation accuracy, "
        "mean ± std over seeds; p: paired t-test against CE on the same seeds"
        + (" (the CE row with the same " + ", ".join(map(_column, keys)) + ")" if keys else "")
        + ".",
    ]
    shared = shared_settings(runs)
    if shared:
        named = (
            (k.removesuffix("._target_"), v.rsplit(".", 1)[-1])
            if k.endswith("._target_")
            else (k, v)
            for k, v in shared.items()
        )
        lines.append("All rows: " + ", ".join(f"{k}={v}" for k, v in named) + ".")
    used = runs[runs["dir"].isin([d for m in chosen["members"] for d in m])]
    skipped = used[used["skipped_steps"].fillna(0) > 0]
    lines.append(
        f"Steps skipped for non-finite values in the runs above: "
        f"{int(skipped['skipped_steps'].sum())}"
        + (
            " ("
            + ", ".join(f"{d}: {int(n)}" for d, n in zip(skipped["dir"], skipped["skipped_steps"]))
            + ")"
            if len(skipped)
            else ""
        )
        + "."
    )
    if len(incomplete):
        lines += ["", "Incomplete groups (left out of the table):", ""]
        for _, g in incomplete.sort_values(["task", "loss"], kind="stable").iterrows():
            where = " ".join(f"{_column(k)}={g[k]}" for k in keys)
            lines.append(
                f"- {g['task']} N={g['N']} {g['loss']} {where + ' ' if where else ''}"
                f"τ={_none(g['temperature'])} λ={_none(g['lam'])} r1={_none(g['r1'])}: "
                f"seeds {sorted(g['seeds'])} of {g['expected']}"
            )
    if left_out:
        lines += ["", f"Runs left out ({len(left_out)}):", ""]
        lines += [f"- {where}: {why}" for where, why in left_out]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    table = pd.DataFrame(csv_rows) if csv_rows else pd.DataFrame(columns=["task"])
    if csv_rows:  # in the order of the markdown table
        order = {row: i for i, row in enumerate(rows)}
        position = [order[(r["loss"], r["N"], *(r[_column(k)] for k in keys))] for r in csv_rows]
        table = table.assign(_order=position).sort_values(["task", "_order"]).drop(columns="_order")
    table.to_csv(out / "table.csv", index=False)


def _order(n) -> float:
    return n if isinstance(n, int | float) else float("inf")  # "all" after every N


def _none(value):
    """A missing value as the old tables wrote it (None), not pandas' NaN."""
    return None if pd.isna(value) else value


def records(runs: pd.DataFrame) -> list[dict]:
    """The runs as dicts, a missing value as None."""
    return runs.astype(object).where(runs.notna(), None).to_dict("records")


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


def tsne_figure(chosen: pd.DataFrame, runs: pd.DataFrame, sweep_dir: Path, out: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    panels = []
    seed_of = runs.set_index("dir")["seed"]
    for _, entry in chosen.sort_values(["task", "loss"], kind="stable").iterrows():
        if entry["loss"] not in ("CE+LS", "CE+EPO", "CE+SCL"):
            continue
        first = entry["members"][0]  # the lowest seed
        path = sweep_dir / first / "test_embeddings.npz"
        if path.exists():
            title = f"{entry['loss']} ({entry['task']}, N={entry['N']}, seed {seed_of[first]})"
            panels.append((title, np.load(path)))
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
    if runs.empty:
        raise SystemExit(f"error: no complete text-classification runs under {args.sweep_dir}")
    args.out.mkdir(parents=True, exist_ok=True)
    keys = distinguishing(runs)
    # one row per run: its results and the settings that tell rows of the table apart
    shown = [c for c in runs.columns if not c.startswith("setting:") and c != "preference_text"]
    runs[shown + keys].rename(columns=_column).to_csv(args.out / "runs.csv", index=False)
    chosen, incomplete = choose(runs, keys)
    write_tables(runs, chosen, incomplete, keys, args.out, left_out)
    loss_space_figure(records(runs), args.out)
    has_tsne = tsne_figure(chosen, runs, args.sweep_dir, args.out)
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
