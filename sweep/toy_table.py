"""Summarise a toy multirun: final losses vs the exact targets, one row per run.

python train.py -m task=toy combiner=ls,epo,png preference=0.2,0.4,0.6,0.8 hydra.sweep.dir=D
python train.py -m task=toy combiner=mgda hydra.sweep.dir=D     # MGDA ignores the preference
python sweep/toy_table.py D

A run of a combiner that ignores the preference (none recorded) has no ray point: its row shows
"—" for r1 and the distance to the ray point.

Runs are read by ``moo_lightning.sweeps.load_runs`` (complete, status ok, no duplicates); those
left out are listed under the table (runs of other tasks and ensembles are passed over).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# the checkout's package, so that `python sweep/toy_table.py` reads records as runs wrote them
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moo_lightning import sweeps  # noqa: E402
from moo_lightning.record import RunRecord  # noqa: E402
from moo_lightning.tasks.toy import front_point, ray_point  # noqa: E402


def _single(m: RunRecord) -> np.ndarray:
    """The final losses of a single-model toy run (ensembles record a hypervolume)."""
    if "hv" in m:
        raise ValueError(f"{sweeps.OTHER_TASK}single-model toy run (an ensemble)")
    if m.get("final_losses") is None:
        raise ValueError("no final losses recorded")
    return np.array(m.get("final_losses"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    args = ap.parse_args()
    ends = [front_point(1.0), front_point(-1.0)]
    kept, left_out = sweeps.load_runs(
        args.sweep_dir,
        _single,
        tasks="toy",
        identity=lambda m, _: (m.combiner, str(m.preference)),
    )
    rows = []
    for run in kept:
        m, final = run.record, run.fields
        r1 = m.preference[0] if m.preference else None  # None: the combiner ignores it
        ray = None if r1 is None else np.abs(final - ray_point(r1)).max()
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
    for c, r1, f, ray, end, g, t in sorted(rows, key=lambda r: (r[0], r[1] or 0.0)):
        cells = [
            c,
            "—" if r1 is None else f"{r1:.1f}",
            f"({f[0]:.4f}, {f[1]:.4f})",
            "—" if ray is None else f"{ray:.4f}",
            f"{end:.4f}",
            f"{g:.1e}",
            f"{t:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")
    for where, why in left_out:
        if not why.startswith(sweeps.OTHER_TASK):
            print(f"left out: {where}: {why}")


if __name__ == "__main__":
    main()
