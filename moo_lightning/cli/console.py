"""What a run prints on the console: the block every run ends with, read from its record."""

from __future__ import annotations

from pathlib import Path

from moo_lightning.record import RunRecord


def summary(run_dir: Path, record: RunRecord, headline: tuple[str, ...] = ()) -> str:
    """The block every run ends with: its folder, what ran, the headline results its task
    declares (``module.headline_metrics``) and the time it took."""
    heads = [f"{k} {record.get(k):.4g}" for k in headline if isinstance(record.get(k), float)]
    best_step = record.get("best_step")
    if best_step is not None and "val/acc_best" in record:
        heads.append(f"best at step {best_step}")
    losses = record.get("final_losses") or record.get("final_train_losses")
    if losses and not isinstance(losses[0], list):
        heads.append("final losses (" + ", ".join(f"{v:.4f}" for v in losses) + ")")
    steps = record.steps
    counts = f"{steps} step{'' if steps == 1 else 's'}, {record.skipped_steps} skipped"
    choices = record.choices or {}
    members = record.get("members")
    what = [
        str(record.task or choices.get("task") or ""),
        *(f"{k} {choices[k]}" for k in ("encoder", "objective") if choices.get(k)),
        f"combiner {record.combiner}" if record.combiner else "",
        "r (" + ", ".join(f"{v:g}" for v in record.preference) + ")" if record.preference else "",
        f"{members} members" if members else "",
        f"seed {record.seed}" if record.seed is not None else "",
    ]
    early = record.stopped_early
    if early:
        best = early.get("best")
        counts += (
            f" · stopped early at step {early['step']}: {early['monitor']} "
            + (f"best {best:.4g}, " if isinstance(best, float) else "")
            + str(early.get("reason", ""))
        )
    model = ""
    if record.model:
        size = record.model_bytes
        model = f", {record.model}" + (f" ({size / 1e6:.0f} MB)" if size else "")
    lines = [
        f"== {record.status}: {run_dir}",
        "   " + " · ".join(w for w in what if w),
        "   " + (" · ".join(heads) if heads else (record.status_reason or "")),
        f"   {counts} · {record.wall_time_s:.1f} s (fit {record.timing_s['fit']:.1f} s) · "
        "metrics.json" + model,
    ]
    return "\n".join(lines)
