"""Training-step cost of each combiner and gradient scope against LS, on one fixed batch.

    python bench/step.py [--model minilm] [--steps 6] [--out outputs/bench/results.json]

Each configuration runs in its own process (same batch, same model, same seed): median step
time over ``--steps`` timed steps after 2 warm-up steps, the combiner's own time per call, and
the process's peak resident memory (CUDA: peak allocated). Prints a table of ratios to LS; all
figures come from this one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [
    ("ls", "all"),
    ("mgda", "all"),
    ("epo", "all"),
    ("png", "all"),
    ("mgda", "representation"),
    ("epo", "representation"),
    ("png", "representation"),
    ("epo", "top"),
]
SHARED_SST2 = Path(__file__).resolve().parents[2] / "shared/data/glue_hf/sst2/validation.jsonl"


def fixed_batch(tokenizer, batch: int, length: int):
    import torch

    if SHARED_SST2.exists():
        rows = [json.loads(line) for line in SHARED_SST2.read_text().splitlines()[:batch]]
        texts, labels = [r["sentence"] for r in rows], [r["label"] for r in rows]
    else:
        texts, labels = (
            [f"example sentence number {i}" for i in range(batch)],
            [i % 2 for i in range(batch)],
        )
    enc = tokenizer(
        texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
    )
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "labels": torch.tensor(labels),
    }


def run_one(model: str, combiner: str, scope: str, steps: int, batch: int, length: int) -> dict:
    import lightning as L
    import torch

    from moo_lightning.combiners import EPO, MGDA, PNG, LinearScalarization
    from moo_lightning.tasks.glue.encoders import Backbone
    from moo_lightning.tasks.glue.module import TextClassificationModule
    from moo_lightning.tasks.glue.objectives import MOOContrastive

    torch.manual_seed(0)
    backbone = Backbone(model)
    comb = {"ls": LinearScalarization, "mgda": MGDA, "epo": EPO, "png": PNG}[combiner]()
    top = [
        "classifier.head",
        f"classifier.encoder.encoder.layer.{backbone.encoder.config.num_hidden_layers - 1}",
    ]
    module = TextClassificationModule(
        backbone,
        MOOContrastive(),
        2,
        comb,
        [0.1, 0.9],
        gradient_scope=top if scope == "top" else scope,
    )
    data = fixed_batch(backbone.tokenizer, batch, length)
    times, combine_ms = [], []

    class Timer(L.Callback):
        def on_train_batch_start(self, *a):
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, b, idx):
            times.append(time.perf_counter() - self.t)

    class Timed:  # records the combiner's own time per call (its combine_ms diagnostic)
        needs_gram, name = module.combiner.needs_gram, module.combiner.name

        def __init__(self, inner):
            self.inner = inner

        def __call__(self, *a, **k):
            res = self.inner(*a, **k)
            combine_ms.append(res.diagnostics["combine_ms"])
            return res

    module.combiner = Timed(module.combiner)
    loader = torch.utils.data.DataLoader([data] * (steps + 2), batch_size=None)
    trainer = L.Trainer(
        max_steps=steps + 2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Timer()],
        accelerator="auto",
        devices=1,
    )
    trainer.fit(module, loader)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    import numpy as np

    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "combiner": combiner,
        "scope": scope,
        "model": model,
        "batch": batch,
        "length": length,
        "median_step_s": float(np.median(times[2:])),
        "steps_timed": len(times[2:]),
        "median_combine_ms": float(np.median(combine_ms[2:])) if len(combine_ms) > 2 else 0.0,
        "peak_bytes": int(peak),
        "trainable_params": trainable,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--out", default="outputs/bench/results.json")
    ap.add_argument("--one", nargs=2, metavar=("COMBINER", "SCOPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.model, *args.one, args.steps, args.batch, args.length)))
        return
    rows = []
    for combiner, scope in CONFIGS:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            combiner,
            scope,
            "--model",
            args.model,
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            "--length",
            str(args.length),
        ]
        out = subprocess.run(
            cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1")
        )
        if out.returncode != 0:
            sys.exit(f"{combiner}/{scope} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(
            f"  measured {combiner:>4} / {scope:<14} {rows[-1]['median_step_s']:.3f} s/step",
            flush=True,
        )
    ls = rows[0]
    m = 2
    budget = ls["peak_bytes"] + m * ls["trainable_params"] * 4
    print(
        f"\nmodel={args.model} batch={args.batch} length={args.length} device={ls['device']}; "
        f"LS step {ls['median_step_s']:.3f} s, peak {ls['peak_bytes'] / 2**20:.0f} MiB"
    )
    print(
        f"{'combiner':<6}{'scope':<16}{'step s':>8}{'x LS':>7}{'combine ms':>12}"
        f"{'% of LS step':>14}{'peak MiB':>10}{'<= budget':>10}"
    )
    for r in rows:
        r["step_ratio_to_ls"] = r["median_step_s"] / ls["median_step_s"]
        r["combine_share_of_ls_step"] = r["median_combine_ms"] / 1e3 / ls["median_step_s"]
        r["memory_budget_bytes"] = budget
        r["memory_within_budget"] = r["peak_bytes"] <= budget
        print(
            f"{r['combiner']:<6}{r['scope']:<16}{r['median_step_s']:>8.3f}{r['step_ratio_to_ls']:>7.2f}"
            f"{r['median_combine_ms']:>12.2f}{100 * r['combine_share_of_ls_step']:>13.2f}%"
            f"{r['peak_bytes'] / 2**20:>10.0f}{str(r['memory_within_budget']):>10}"
        )
    targets = {
        "exact_scope_max_ratio": max(
            r["step_ratio_to_ls"] for r in rows if r["scope"] == "all" and r["combiner"] != "ls"
        ),
        "representation_scope_max_ratio": max(
            r["step_ratio_to_ls"] for r in rows if r["scope"] == "representation"
        ),
        "max_combine_share": max(r["combine_share_of_ls_step"] for r in rows),
        "all_within_memory_budget": all(r["memory_within_budget"] for r in rows),
    }
    print(
        f"\nexact scope: max {targets['exact_scope_max_ratio']:.2f}x LS (target <= 1.70); "
        f"representation: max {targets['representation_scope_max_ratio']:.2f}x (target <= 1.10); "
        f"combiner solve: max {100 * targets['max_combine_share']:.2f}% of the LS step "
        "(target <= 1%); "
        f"memory within LS + m*params*4 B: {targets['all_within_memory_budget']}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "targets": targets}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
