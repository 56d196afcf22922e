"""Newton iterations of the Nash-MTL and FairGrad solvers from a cold start, on random Gram
matrices, per m and (FairGrad) α.

    python bench/newton_iterations.py [--problems 250] [--m 2,3,5,11] [--seed 0]

Each problem: G with m rows of 20 standard-normal entries, row i scaled by 10^U(−2,2), K = GGᵀ,
losses 1. Every solve starts cold (a fresh combiner; in training, Nash-MTL warm-starts from the
previous step's α). Prints, per method and m, how many problems were solved, the median and the
largest number of iterations (the ``newton_iterations`` diagnostic) and how many raised
SolverError (the solvers' caps: ``optim_niter`` / ``max_iter`` = 100).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from moo_lightning.combiners import FairGrad, NashMTL
from moo_lightning.errors import SolverError

METHODS = {
    "nash_mtl": lambda: NashMTL(max_norm=0),
    "fairgrad α=0.5": lambda: FairGrad(alpha=0.5),
    "fairgrad α=1": lambda: FairGrad(alpha=1),
    "fairgrad α=2": lambda: FairGrad(alpha=2),
    "fairgrad α=5": lambda: FairGrad(alpha=5),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=250, help="random Grams per m")
    ap.add_argument("--m", default="2,3,5,11", help="numbers of objectives, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sizes = [int(m) for m in args.m.split(",")]
    rng = np.random.default_rng(args.seed)
    iters = {(name, m): [] for name in METHODS for m in sizes}
    failed = dict.fromkeys(iters, 0)
    for m in sizes:
        for _ in range(args.problems):
            G = rng.standard_normal((m, 20)) * 10 ** rng.uniform(-2, 2, size=(m, 1))
            K = torch.tensor(G @ G.T)
            losses = torch.ones(m, dtype=torch.float64)
            for name, make in METHODS.items():
                try:
                    res = make()(losses, K, None)
                except SolverError:
                    failed[(name, m)] += 1
                    continue
                iters[(name, m)].append(res.diagnostics["newton_iterations"])
    print("| method | m | solved | median iterations | most iterations | SolverError |")
    print("|---|---|---|---|---|---|")
    for (name, m), its in iters.items():
        med, top = (f"{np.median(its):.0f}", f"{max(its):.0f}") if its else ("—", "—")
        print(f"| {name} | {m} | {len(its)} | {med} | {top} | {failed[(name, m)]} |")


if __name__ == "__main__":
    main()
