"""The fixed cost of a sweep job (imports, Hydra, encoder load, data reading and tokenising)
against the work it exists for (training and testing), with and without the in-process caches.

    python bench/job_cost.py [--data ../shared/data/glue_hf/sst2] [--jobs 3] [--steps 50]

Runs the same few-shot sweep twice, each as one `train.py -m` process with Hydra's basic
launcher (all jobs share the process, as with a reused joblib worker): once with
`encoder.cache=false data.cache=false`, once with the caches on. Each job's `metrics.json` holds
its timings (`timing_s`); the process's wall time is measured here. Prints one table and writes
`outputs/bench/job_cost.json`; every figure comes from this one invocation.

Fixed cost = process wall time − Σ (fit + test): imports and Hydra's set-up, each job's encoder
and data set-up, Hydra's per-job bookkeeping and writing results. A launcher that starts one
process per job (submitit/SLURM) pays the first job's fixed cost every time: that share is the
"one process per job" column.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_sweep(out: Path, data: str, jobs: int, steps: int, cache: bool, model: str) -> dict:
    if out.exists():
        shutil.rmtree(out)  # a complete metrics.json would make the job skip
    flag = "true" if cache else "false"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "task=sst2",
        f"encoder={model}",
        "callbacks=none",
        "logger=none",
        f"data.path={data}",
        "data.num_train=20",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={min(25, steps)}",
        f"seed=range(0,{jobs})",
        f"encoder.cache={flag}",
        f"data.cache={flag}",
        f"hydra.sweep.dir={out}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    runs = []
    for seed in range(jobs):
        metrics = json.loads(next(out.glob(f"*seed={seed}*/metrics.json")).read_text())
        runs.append(
            {
                "seed": seed,
                **metrics["timing_s"],
                "cache_hits": metrics.get("cache_hits"),
                "results": [metrics.get(k) for k in ("val/acc_best", "test/acc")]
                + list(metrics.get("final_train_losses") or []),
            }
        )
    work = sum(r["fit"] + r["test"] for r in runs)
    first = runs[0]
    first_fixed = first["process_before_run"] + first["setup"]
    return {
        "cache": cache,
        "jobs": jobs,
        "process_wall_s": wall,
        "work_s": work,
        "fixed_s": wall - work,
        "fixed_share": (wall - work) / wall,
        "later_jobs_setup_s": [r["setup"] for r in runs[1:]],
        "first_job_fixed_s": first_fixed,
        "one_process_per_job_share": first_fixed / (first_fixed + first["fit"] + first["test"]),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = ROOT.parent / "shared/data/glue_hf/sst2"
    parser.add_argument("--data", default=str(default_data))
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "outputs/bench/job_cost.json"))
    args = parser.parse_args()
    if args.jobs < 2:
        sys.exit("--jobs must be >= 2 (the caches act from the second job on)")
    if not Path(args.data).is_dir():
        sys.exit(f"--data {args.data!r} is not a folder (GLUE SST-2 in the glue schema)")
    scratch = ROOT / "outputs/bench/job_cost"
    results = [
        run_sweep(scratch / name, args.data, args.jobs, args.steps, cache, args.encoder)
        for name, cache in (("no_cache", False), ("cache", True))
    ]
    same = [a["results"] for a in results[0]["runs"]] == [b["results"] for b in results[1]["runs"]]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {"encoder": args.encoder, "identical_results": same, "results": results}, indent=2
        )
    )

    print(
        f"{args.jobs} jobs of encoder={args.encoder}, SST-2 N=20, {args.steps} steps, one process "
        "(Hydra basic launcher)"
    )
    print(
        "| caches | process s | fit+test s | fixed s | fixed share | later jobs' set-up s "
        "| one process per job |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        later = ", ".join(f"{s:.2f}" for s in r["later_jobs_setup_s"])
        print(
            f"| {'on' if r['cache'] else 'off'} | {r['process_wall_s']:.1f} | {r['work_s']:.1f} "
            f"| {r['fixed_s']:.1f} | {100 * r['fixed_share']:.1f}% | {later} "
            f"| {100 * r['one_process_per_job_share']:.1f}% |"
        )
    print("per job (encoder / data set-up s):")
    for r in results:
        parts = [f"seed {x['seed']}: {x['encoder']:.2f} / {x['data']:.2f}" for x in r["runs"]]
        print(f"  caches {'on' if r['cache'] else 'off'}: " + "; ".join(parts))
    print(f"val/acc_best, test/acc and final losses identical with and without caches: {same}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
