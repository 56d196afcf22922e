"""The 5-model PNG ensemble table: hypervolume ratio and IGD+ as mean ± std over seeds, one row
per (criterion, start).

    python train.py -m sweep=toy_energy
    python sweep/toy_energy_table.py multirun/toy_energy [--json out.json]

One run of the clustered energy ensemble is chaotic (after a few hundred steps its outcome
depends on the machine's floating-point summation order), so the table reports the spread over
seeds (the seed moves the members' starting points), not a single run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

# the checkout's package, so that `python sweep/toy_energy_table.py` reads records as runs wrote
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moo_lightning import sweeps  # noqa: E402
from moo_lightning.record import RunRecord  # noqa: E402


def _ensemble(m: RunRecord) -> tuple:
    """(criterion, start) of a toy ensemble run that recorded its hypervolume ratio."""
    if "hv_ratio" not in m:
        raise ValueError(f"{sweeps.OTHER_TASK}toy ensemble run (no hv_ratio)")
    return (m.get("criterion"), m.get("start"))


def collect(sweep_dir: Path) -> dict[tuple[str, str], dict[str, list[float]]]:
    """{(criterion, start): {"hv_ratio": [...], "igd_plus": [...], "seed": [...]}} over the
    finished toy ensemble runs of ``sweep_dir`` (``moo_lightning.sweeps.load_runs``: complete,
    status ok, no duplicates)."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    kept, _ = sweeps.load_runs(sweep_dir, _ensemble, tasks="toy", identity=lambda m, key: key)
    for run in kept:
        group = groups[run.fields]
        group["hv_ratio"].append(float(run.record.get("hv_ratio")))
        group["igd_plus"].append(float(run.record.get("igd_plus")))
        group["seed"].append(run.seed)
    return groups


def summary(groups) -> list[dict]:
    rows = []
    for (criterion, start), values in sorted(groups.items()):
        row = {"criterion": criterion, "start": start, "runs": len(values["seed"])}
        for key in ("hv_ratio", "igd_plus"):
            mean, std = sweeps.mean_std(values[key])
            row[key] = mean
            row[f"{key}_std"] = std if len(values[key]) > 1 else 0.0
            row[f"{key}_min"], row[f"{key}_max"] = min(values[key]), max(values[key])
        rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    rows = summary(collect(args.sweep_dir))
    if not rows:
        raise SystemExit(f"{args.sweep_dir}: no finished toy ensemble run (metrics.json with hv)")
    print("| criterion | start | seeds | hv_ratio mean ± std (min–max) | igd_plus mean ± std |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['criterion']} | {r['start']} | {r['runs']} "
            f"| {r['hv_ratio']:.3f} ± {r['hv_ratio_std']:.3f} "
            f"({r['hv_ratio_min']:.3f}–{r['hv_ratio_max']:.3f}) "
            f"| {r['igd_plus']:.3f} ± {r['igd_plus_std']:.3f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
