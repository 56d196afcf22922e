"""Per-call solve times of the combiners on random problems, and a check that cvxpy compiles each
EPO/PNG program once (DPP) rather than per call.

    python bench/solvers.py [--calls 500] [--out outputs/bench/solvers.json]

Prints one table; every figure is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cvxpy as cp
import numpy as np
import torch

from moo_lightning.combiners import EPO, MGDA, PNG, LinearScalarization

_compiles = {"n": 0}
_original = cp.Problem._construct_chain


def _counting_construct_chain(self, *args, **kwargs):
    _compiles["n"] += 1
    return _original(self, *args, **kwargs)


cp.Problem._construct_chain = _counting_construct_chain


def problems(rng, m, calls, on_ray_every=3):
    for k in range(calls):
        A = rng.standard_normal((m, m + 2))
        pref = rng.uniform(0.05, 1.0, m)
        pref /= pref.sum()
        losses = 1 / pref if k % on_ray_every == 0 else rng.uniform(0.05, 2.0, m)
        yield torch.tensor(losses), torch.tensor(A @ A.T), pref


def bench(name, combiner, m, calls, seed=0):
    rng = np.random.default_rng(seed)
    for losses, K, pref in problems(rng, m, 10):  # warm-up: first compile of each program
        combiner(losses, K, pref)
    before = _compiles["n"]
    times, solver_ms = [], []
    for losses, K, pref in problems(rng, m, calls):
        start = time.perf_counter()
        res = combiner(losses, K, pref)
        times.append(1e3 * (time.perf_counter() - start))
        if "solve_ms" in res.diagnostics:
            solver_ms.append(res.diagnostics["solve_ms"])
    return {
        "combiner": name,
        "m": m,
        "calls": calls,
        "median_call_ms": float(np.median(times)),
        "p90_call_ms": float(np.percentile(times, 90)),
        "median_solve_ms": float(np.median(solver_ms)) if solver_ms else None,
        "recompilations_after_warmup": _compiles["n"] - before,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--out", default="outputs/bench/solvers.json")
    args = ap.parse_args()
    rows = []
    for m in (2, 3):
        rows.append(bench("ls", LinearScalarization(), m, args.calls))
        rows.append(bench("mgda", MGDA(), m, args.calls))
        rows.append(bench("epo (cvxpy, CLARABEL)", EPO(solver="cvxpy"), m, args.calls))
        if m == 2:
            rows.append(bench("epo (exact)", EPO(solver="exact"), m, args.calls))
        rows.append(bench("png (non-uniformity)", PNG(e=0.0), m, args.calls))
    print(
        f"{'combiner':<24}{'m':>3}{'median call ms':>16}{'p90 ms':>9}"
        f"{'median solve ms':>17}{'recompiles':>12}"
    )
    for r in rows:
        solve = "-" if r["median_solve_ms"] is None else f"{r['median_solve_ms']:.3f}"
        print(
            f"{r['combiner']:<24}{r['m']:>3}{r['median_call_ms']:>16.3f}{r['p90_call_ms']:>9.3f}"
            f"{solve:>17}{r['recompilations_after_warmup']:>12}"
        )
    epo2 = next(r for r in rows if r["combiner"].startswith("epo (cvxpy") and r["m"] == 2)
    ok = epo2["median_solve_ms"] <= 1.5 and epo2["recompilations_after_warmup"] == 0
    print(
        f"\nEPO cvxpy m=2: median solve {epo2['median_solve_ms']:.3f} ms (target <= 1.5 ms), "
        f"{epo2['recompilations_after_warmup']} recompilations after warm-up: "
        f"{'meets' if ok else 'MISSES'} the target"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "epo_m2_target_met": ok}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
