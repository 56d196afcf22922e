"""Per-call solve times of the combiners on random problems, and a check that cvxpy compiles each
EPO/PNG program once (DPP) rather than per call; then every combiner config against TorchJD.

    python bench/solvers.py [--calls 500] [--config-calls 100] [--step-ms 1484]
                            [--out outputs/bench/solvers.json]

The second table builds every combiner of moo_lightning/conf/combiner/ from its YAML (Hydra
compose, as tests/helpers.py ``build_combiner``) and times one call (losses, float64 Gram,
preference) for m = 2, 5 and 10 (skipped where ``supports(m)`` is False), next to the same
method in TorchJD 0.18 called directly on the same float64 Gram (ConFIG and NashMTL on the
Jacobian; loss-only scalarizers: forward + autograd of the losses), and the ratio ours/TorchJD.
Targets checked: each native combiner at most TorchJD's time for the same method, and every
combiner below 5% of a MiniLM training step (``--step-ms``; the default is the LS step that
``python bench/step.py --model minilm --steps 8`` measured on 2 CPU cores, README "Step cost").
Prints the tables; every timing is measured in this run.
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


# --- every combiner config against TorchJD ------------------------------------------------------

MS = (2, 5, 10)


def _scalarizer(make):
    """A TorchJD scalarizer timed as the weights it implies: forward + autograd of the losses."""

    def factory(m):
        scalarizer = make(m)

        def call(losses, K, G):
            ell = losses.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(scalarizer(ell), ell)
            return grad

        return call

    return factory


def _weighting(make, on_jacobian=False):
    def factory(m):
        weighting = make(m)
        if on_jacobian:
            return lambda losses, K, G: weighting(G)
        return lambda losses, K, G: weighting(K)

    return factory


def torchjd_counterparts() -> dict:
    """combiner config -> (TorchJD name, factory(m) -> call(losses, K, G))."""
    from torchjd import aggregation as A
    from torchjd import scalarization as S

    return {
        "aligned_mtl": ("AlignedMTLWeighting", _weighting(lambda m: A.AlignedMTLWeighting())),
        "cagrad": ("CAGradWeighting(c=0.4)", _weighting(lambda m: A.CAGradWeighting(c=0.4))),
        "config": ("ConFIG (on G)", _weighting(lambda m: A.ConFIG(), on_jacobian=True)),
        "cr_mogm": (
            "CRMOGMWeighting(MGDAWeighting)",
            _weighting(lambda m: A.CRMOGMWeighting(A.MGDAWeighting())),
        ),
        "dualproj": ("DualProjWeighting", _weighting(lambda m: A.DualProjWeighting())),
        "dwa": ("scalarization.DWA", _scalarizer(lambda m: S.DWA())),
        "fairgrad": ("FairGradWeighting(α=1)", _weighting(lambda m: A.FairGradWeighting(1.0))),
        "famo": ("scalarization.FAMO", _scalarizer(lambda m: S.FAMO(m))),
        "gls": ("scalarization.GeometricMean", _scalarizer(lambda m: S.GeometricMean())),
        "gradvac": ("GradVacWeighting", _weighting(lambda m: A.GradVacWeighting())),
        "imtl_g": ("IMTLGWeighting", _weighting(lambda m: A.IMTLGWeighting())),
        "ls": ("scalarization.Mean", _scalarizer(lambda m: S.Mean())),
        "mgda": ("MGDAWeighting", _weighting(lambda m: A.MGDAWeighting())),
        "nash_mtl": (
            "NashMTL (on G)",
            _weighting(lambda m: A.NashMTL(n_tasks=m).weighting, on_jacobian=True),
        ),
        "pcgrad": ("PCGradWeighting", _weighting(lambda m: A.PCGradWeighting())),
        "rlw": ("scalarization.Random", _scalarizer(lambda m: S.Random())),
        "stch": ("scalarization.STCH(μ=0.01)", _scalarizer(lambda m: S.STCH(0.01))),
        "torchjd": ("UPGradWeighting", _weighting(lambda m: A.UPGradWeighting())),
        "upgrad": ("UPGradWeighting", _weighting(lambda m: A.UPGradWeighting())),
        "uw": ("scalarization.UW", _scalarizer(lambda m: S.UW(m))),
    }


def config_problems(rng, m, calls):
    for _ in range(calls):
        G = torch.tensor(rng.standard_normal((m, m + 2)))
        losses = torch.tensor(rng.uniform(0.05, 2.0, m))
        pref = rng.uniform(0.05, 1.0, m)
        yield losses, G @ G.T, G, pref / pref.sum()


def _median_ms(fn, batch) -> float:
    times = []
    for args in batch:
        start = time.perf_counter()
        fn(*args)
        times.append(1e3 * (time.perf_counter() - start))
    return float(np.median(times))


def bench_config(name: str, m: int, calls: int, counterparts: dict, seed=0) -> dict | None:
    import warnings

    from crosscheck import compose_combiner

    comb = compose_combiner(name)
    if not comb.supports(m):
        return None
    comb.prepare(m)
    rng = np.random.default_rng(seed)
    warm = list(config_problems(rng, m, 5))
    batch = list(config_problems(rng, m, calls))
    step = iter(range(10**9))

    def ours(losses, K, G, pref):
        return comb(losses, K if comb.needs_gram else None, pref, step=next(step))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for args in warm:
            ours(*args)
        before = _compiles["n"]
        ours_ms = _median_ms(ours, batch)
        recompiles = _compiles["n"] - before
        ref_name, ref_ms = "-", None
        if name in counterparts:
            ref_name, factory = counterparts[name]
            ref = factory(m)
            for losses, K, G, _ in warm:
                ref(losses, K, G)
            ref_ms = _median_ms(lambda losses, K, G, pref: ref(losses, K, G), batch)
    return {
        "combiner": name,
        "m": m,
        "calls": calls,
        "median_call_ms": ours_ms,
        "torchjd": ref_name,
        "torchjd_median_ms": ref_ms,
        "ratio": None if ref_ms is None else ours_ms / ref_ms,
        "recompilations_after_warmup": recompiles,
        "native": name not in ("torchjd",),
    }


def config_table(calls: int, step_ms: float, names=None) -> tuple[list[dict], dict]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from crosscheck import ROOT

    names = names or sorted(p.stem for p in (ROOT / "moo_lightning/conf/combiner").glob("*.yaml"))
    counterparts = torchjd_counterparts()
    rows = []
    for name in names:
        for m in MS:
            row = bench_config(name, m, calls, counterparts)
            if row is not None:
                row["pct_of_step"] = 100 * row["median_call_ms"] / step_ms
                rows.append(row)
    slower = [
        f"{r['combiner']} m={r['m']} ({r['ratio']:.2f}x)"
        for r in rows
        if r["native"] and r["ratio"] is not None and r["ratio"] > 1.0
    ]
    over = [f"{r['combiner']} m={r['m']}" for r in rows if r["pct_of_step"] >= 5.0]
    targets = {
        "step_ms": step_ms,
        "native_slower_than_torchjd": slower,
        "at_or_over_5pct_of_step": over,
    }
    return rows, targets


def print_config_table(rows, targets) -> None:
    print(
        f"\n{'config':<13}{'m':>3}{'ours ms':>10}{'TorchJD ms':>12}{'ours/TJD':>10}"
        f"{'% of step':>11}{'recompiles':>12}  TorchJD method"
    )
    for r in rows:
        ref = "-" if r["torchjd_median_ms"] is None else f"{r['torchjd_median_ms']:.3f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(
            f"{r['combiner']:<13}{r['m']:>3}{r['median_call_ms']:>10.3f}{ref:>12}{ratio:>10}"
            f"{r['pct_of_step']:>10.3f}%{r['recompilations_after_warmup']:>12}  {r['torchjd']}"
        )
    slower, over = targets["native_slower_than_torchjd"], targets["at_or_over_5pct_of_step"]
    print(
        "\nTarget 1, each native combiner at most TorchJD's time: "
        + ("meets it" if not slower else f"MISSES it for {', '.join(slower)}")
    )
    print(
        f"Target 2, every combiner below 5% of a MiniLM step ({targets['step_ms']:.0f} ms): "
        + ("meets it" if not over else f"MISSES it for {', '.join(over)}")
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--config-calls", type=int, default=100)
    ap.add_argument("--step-ms", type=float, default=1484.0)
    ap.add_argument("--configs", default=None, help="comma-separated config names (default all)")
    ap.add_argument("--out", default="outputs/bench/solvers.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
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
    names = args.configs.split(",") if args.configs else None
    config_rows, targets = config_table(args.config_calls, args.step_ms, names)
    print_config_table(config_rows, targets)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out = {"rows": rows, "epo_m2_target_met": ok, "configs": config_rows, "targets": targets}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
