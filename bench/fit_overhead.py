"""Framework overhead of a default few-shot job: Lightning ``fit`` (through train.py's ``run``)
against a bare PyTorch loop doing the same steps on the same batches, in one process and one run.

    python bench/fit_overhead.py [--data ../shared/data/glue_hf/sst2] [--steps 100] [--rounds 2]

The job is the GLUE default (task=sst2, MiniLM stand-in, N = 20, batch 16, objective moo with the
default combiner, linear warmup + decay, validation every ``--interval`` steps) cut to
``--steps`` optimizer steps. The bare loop uses the very objects ``run`` builds (encoder, data
loaders, objective, combiner, optimizer and schedule factories) and the same per-step
mathematics (per-objective gradients, Gram, combiner, ``.grad`` = Gᵀw, AdamW, schedule), with
plain ``for`` loops, ``torch.inference_mode`` validation, no logging. The two alternate for
``--rounds`` rounds after one warm-up job (imports, encoder and data caches), so both see the
same machine load. Prints where the time goes (train steps, validation, everything else) and
the ratio fit / bare loop; writes ``outputs/bench/fit_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class StepTimer(L.Callback):
    """Wall time of training batches and validation passes inside ``fit``."""

    last: StepTimer | None = None

    def __init__(self):
        self.train_s = self.val_s = 0.0
        self.steps = self.validations = 0
        StepTimer.last = self

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.train_s += time.perf_counter() - self._t
        self.steps += 1

    def on_validation_start(self, trainer, module):
        self._v = time.perf_counter()

    def on_validation_end(self, trainer, module):
        self.val_s += time.perf_counter() - self._v
        self.validations += 1


def compose(overrides: list[str], run_dir: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(str(ROOT / "moo_lightning" / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.run_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


def lightning_job(overrides: list[str], run_dir: Path) -> dict:
    from moo_lightning.cli import train

    cfg = compose([*overrides, "+callbacks.timer._target_=__main__.StepTimer"], run_dir)
    train.run(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timer = StepTimer.last
    fit = metrics["timing_s"]["fit"]
    return {
        "fit_s": fit,
        "train_steps_s": timer.train_s,
        "validation_s": timer.val_s,
        "other_s": fit - timer.train_s - timer.val_s,
        "steps": timer.steps,
        "validations": timer.validations,
        "val_history": metrics["val_history"],
    }


def bare_job(overrides: list[str], run_dir: Path) -> dict:
    """The same job without Lightning: the objects run() would build, stepped by hand."""
    import hydra

    from moo_lightning.gradients import gram_matrix, objective_grads, write_direction

    cfg = compose(overrides, run_dir)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    backbone = hydra.utils.instantiate(cfg.module.encoder)
    data = hydra.utils.instantiate(cfg.data, tokenizer=backbone.tokenizer)
    data.setup("fit")
    module = hydra.utils.instantiate(
        cfg.module,
        combiner=hydra.utils.instantiate(cfg.combiner),
        preference=list(cfg.preference),
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=hydra.utils.instantiate(cfg.scheduler),
        encoder=backbone,
        num_labels=data.num_labels,
    )
    model, objective, combiner = module.classifier, module.objective, module.combiner
    params = [p for p in model.parameters() if p.requires_grad]
    max_steps, interval = int(cfg.trainer.max_steps), int(cfg.trainer.val_check_interval)
    opt = module.optimizer_factory(params)
    sched = module.scheduler_factory(opt, total_steps=max_steps)
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()

    start = time.perf_counter()
    train_s = val_s = 0.0
    step, epoch, history = 0, 0, []
    model.train()
    while step < max_steps:
        train_loader.batch_sampler.set_epoch(epoch)
        for batch in train_loader:
            t = time.perf_counter()
            logits, feats = model(batch["input_ids"], batch["attention_mask"])
            losses = objective(logits, feats, batch["labels"])
            opt.zero_grad(set_to_none=True)
            if combiner.needs_gram:
                grads = objective_grads(losses, params)
                res = combiner(losses.detach(), gram_matrix(grads), module.preference)
                write_direction(grads, res.weights, params)
            else:
                res = combiner(losses.detach(), None, module.preference)
                (res.weights.to(losses) * losses).sum().backward()
            opt.step()
            sched.step()
            step += 1
            train_s += time.perf_counter() - t
            if step % interval == 0:
                v = time.perf_counter()
                model.eval()
                correct = total = 0
                with torch.inference_mode():
                    for vb in val_loader:
                        pred = model(vb["input_ids"], vb["attention_mask"])[0].argmax(-1)
                        correct += int((pred == vb["labels"]).sum())
                        total += len(vb["labels"])
                model.train()
                history.append([step, correct / total])
                val_s += time.perf_counter() - v
            if step == max_steps:
                break
        epoch += 1
    fit = time.perf_counter() - start
    return {
        "fit_s": fit,
        "train_steps_s": train_s,
        "validation_s": val_s,
        "other_s": fit - train_s - val_s,
        "steps": step,
        "validations": len(history),
        "val_history": history,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/glue_hf/sst2"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--combiner", default="epo")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--interval", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "outputs/bench/fit_overhead.json"))
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        sys.exit(f"--data {args.data!r} is not a folder (GLUE SST-2 in the glue schema)")
    overrides = [
        "task=sst2",
        f"encoder={args.model}",
        f"combiner={args.combiner}",
        f"data.path={args.data}",
        "logger=none",
        "callbacks=none",
        "test=false",
        "skip_completed=false",
        "trainer.enable_progress_bar=false",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={args.interval}",
    ]
    scratch = ROOT / "outputs/bench/fit_overhead"
    bare_job(overrides, scratch / "warmup")  # imports, encoder and data caches
    rounds = []
    for i in range(args.rounds):
        bare = bare_job(overrides, scratch / f"bare{i}")
        fit = lightning_job(overrides, scratch / f"fit{i}")
        rounds.append({"bare": bare, "fit": fit, "ratio": fit["fit_s"] / bare["fit_s"]})
    ratio = statistics.median(r["ratio"] for r in rounds)
    result = {
        "job": overrides,
        "threads": torch.get_num_threads(),
        "rounds": rounds,
        "ratio_median": ratio,
        "target": 1.10,
        "within_target": ratio <= 1.10,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))

    print(
        f"default few-shot job: SST-2 N=20, encoder={args.model}, combiner={args.combiner}, "
        f"{args.steps} steps, validation every {args.interval}; {torch.get_num_threads()} threads"
    )
    print("| round | loop | total s | train steps s | validation s | everything else s |")
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(rounds):
        for kind in ("bare", "fit"):
            x = r[kind]
            name = "bare PyTorch" if kind == "bare" else "Lightning fit"
            print(
                f"| {i} | {name} | {x['fit_s']:.1f} | {x['train_steps_s']:.1f} "
                f"| {x['validation_s']:.1f} | {x['other_s']:.2f} |"
            )
    per_round = ", ".join(f"{r['ratio']:.3f}" for r in rounds)
    print(f"fit / bare loop: {per_round} (median {ratio:.3f}; target <= 1.10)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
