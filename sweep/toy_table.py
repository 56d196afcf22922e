"""Summarise a toy multirun: final losses vs the exact targets, one row per run.

python train.py -m task=toy combiner=ls,mgda,epo,png preference=0.2,0.4,0.6,0.8
python sweep/toy_table.py multirun/toy/<date>
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from moo_lightning.record import RunRecord
from moo_lightning.tasks.toy import front_point, ray_point


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    args = ap.parse_args()
    ends = [front_point(1.0), front_point(-1.0)]
    rows = []
    for path in sorted(args.sweep_dir.glob("*/metrics.json")):
        m = RunRecord.read(path, strict=False)
        if m.task != "toy" or "hv" in m:  # ensembles record a hypervolume
            continue
        final = np.array(m.get("final_losses"))
        r1 = m.preference[0]
        ray = np.abs(final - ray_point(r1)).max()
        end = min(np.abs(final - e).max() for e in ends)
        rows.append((m.combiner.upper(), r1, final, ray, end, m.get("final_g"), m.wall_time_s))
    header = [
        "combiner",
        "r1",
        "final (l1, l2)",
        "max err to ray point",
        "to nearest end",
        "g(θ) final",
        "fit s",
    ]
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|---|---|")
    for c, r1, f, ray, end, g, t in sorted(rows, key=lambda r: (r[0], r[1])):
        cells = [
            c,
            f"{r1:.1f}",
            f"({f[0]:.4f}, {f[1]:.4f})",
            f"{ray:.4f}",
            f"{end:.4f}",
            f"{g:.1e}",
            f"{t:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
