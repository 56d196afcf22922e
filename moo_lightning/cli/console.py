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
    if record.combiner_fallbacks:  # steps the combiner's solver failed on (on_failure=ls)
        counts += f", {record.combiner_fallbacks} solver fallbacks to LS"
    if record.combiner_recoveries:
        counts += f", {record.combiner_recoveries} solver recoveries"
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
        model = f", {record.model}" + (f" ({_size(size)})" if size else "")
    lines = [
        f"== {record.status}: {run_dir}",
        "   " + " · ".join(w for w in what if w),
        "   " + (" · ".join(heads) if heads else (record.status_reason or "")),
        f"   {counts} · {record.wall_time_s:.1f} s (fit {record.timing_s['fit']:.1f} s) · "
        "metrics.json" + model,
    ]
    return "\n".join(lines)


def _size(n: int) -> str:
    """A file's size as people read it: 91 MB, 81 kB, 512 B."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.0f} {unit}" if n >= 10 * scale else f"{n / scale:.1f} {unit}"
    return f"{n} B"
