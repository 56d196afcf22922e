"""Mean ± std of test accuracy over seeds for each (task, N, objective, combiner) in a sweep.

python sweep/seed_summary.py outputs/sst2_minilm
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    args = ap.parse_args()
    groups = defaultdict(list)
    for path in args.sweep_dir.rglob("metrics.json"):
        m = json.loads(path.read_text())
        loss = m["objective"] if m["objective"] != "moo" else f"moo+{m['combiner_used']}"
        groups[(m["task"], m["num_train"], loss, m.get("model"))].append(m)
    print(
        "| task | N | loss | model | seeds | test acc (mean ± std) | val acc best | wall s / run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (task, n, loss, model), runs in sorted(groups.items()):
        acc = np.array([r["test/acc"] for r in runs])
        val = np.array([r["val/acc_best"] for r in runs])
        wall = np.mean([r["wall_time_s"] for r in runs])
        seeds = ",".join(str(s) for s in sorted(r["seed"] for r in runs))
        std = acc.std(ddof=1) if len(acc) > 1 else 0.0
        print(
            f"| {task} | {n} | {loss} | {model} | {seeds} | {acc.mean():.4f} ± {std:.4f} "
            f"| {val.mean():.4f} | {wall:.0f} |"
        )


if __name__ == "__main__":
    main()
