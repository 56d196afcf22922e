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
from collections import defaultdict
from pathlib import Path

import numpy as np

from moo_lightning.record import RunRecord


def collect(sweep_dir: Path) -> dict[tuple[str, str], dict[str, list[float]]]:
    """{(criterion, start): {"hv_ratio": [...], "igd_plus": [...], "seed": [...]}} over the
    finished ensemble runs (status ok) of ``sweep_dir``."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(sweep_dir.glob("*/metrics.json")):
        record = RunRecord.read(path, strict=False)
        if record.task != "toy" or "hv_ratio" not in record or record.status != "ok":
            continue
        group = groups[(record.get("criterion"), record.get("start"))]
        group["hv_ratio"].append(float(record.get("hv_ratio")))
        group["igd_plus"].append(float(record.get("igd_plus")))
        group["seed"].append(int(record.seed))
    return groups


def summary(groups) -> list[dict]:
    rows = []
    for (criterion, start), values in sorted(groups.items()):
        row = {"criterion": criterion, "start": start, "runs": len(values["seed"])}
        for key in ("hv_ratio", "igd_plus"):
            arr = np.array(values[key])
            row[key] = float(arr.mean())
            row[f"{key}_std"] = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
            row[f"{key}_min"], row[f"{key}_max"] = float(arr.min()), float(arr.max())
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
