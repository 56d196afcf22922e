"""The Multi-MNIST set step: 5 Multi-LeNets stacked and vmapped (one pass, m backwards for all
members, one combiner solve each) against the same 5 members as 5 separate models stepped one
after the other, on the same batches, in one run.

    python bench/ensemble_speed.py [--combiner epo] [--steps 20] [--rounds 3] [--batch 256]

Every round times both ways on the same batches (interleaved, so machine noise hits both);
prints seconds per step and the ratio sequential / vectorised (median over rounds), and checks
that both ways computed the same update.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from moo_lightning.combiners import EPO, MGDA, PNG, LinearScalarization, SmoothTchebycheff
from moo_lightning.module import MultiObjectiveModule
from moo_lightning.tasks.multi_mnist.lenet import MultiLeNet
from moo_lightning.tasks.multi_mnist.module import MultiMNISTSet

COMBINERS = {
    "ls": LinearScalarization,
    "epo": EPO,
    "mgda": MGDA,
    "png": PNG,
    "stch": SmoothTchebycheff,
}


class OneLeNet(MultiObjectiveModule):
    """One member as a model of its own (the sequential baseline)."""

    def __init__(self, combiner, preference, net: MultiLeNet):
        super().__init__(combiner, preference)
        self.net = net

    def objectives(self, batch):
        logits = self.net(batch["images"])  # (B, 2, 10)
        ce = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), batch["labels"].flatten(), reduction="none"
        )
        return ce.view(-1, 2).mean(0)


def step_stacked(ens: MultiMNISTSet, opt, batch) -> None:
    opt.zero_grad(set_to_none=True)
    losses = ens.objectives(batch)
    ens.write_gradients(losses, losses.detach())
    opt.step()


def step_sequential(models, opts, batch) -> None:
    for model, opt in zip(models, opts):
        opt.zero_grad(set_to_none=True)
        losses = model.objectives(batch)
        model.write_gradients(losses[None], losses.detach()[None])
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--combiner", default="epo", choices=sorted(COMBINERS))
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    if not COMBINERS[args.combiner].needs_gram:
        # Gram-free combiners take one backward of the weighted sum, which needs a trainer
        raise SystemExit(f"--combiner {args.combiner}: use a Gram combiner (epo, mgda, png)")

    torch.manual_seed(0)
    batches = [
        {
            "images": torch.rand(args.batch, 1, 36, 36),
            "labels": torch.randint(0, 10, (args.batch, 2)),
        }
        for _ in range(args.steps)
    ]
    ens = MultiMNISTSet(COMBINERS[args.combiner](), [0.5, 0.5], members=args.members)
    models = [
        OneLeNet(COMBINERS[args.combiner](), ens.member_preferences[i], ens.net.member(i))
        for i in range(args.members)
    ]

    def sgd(params):
        return torch.optim.SGD(params, lr=1e-3)

    opt = sgd(ens.parameters())
    opts = [sgd(m.parameters()) for m in models]
    # same start, same batches: after one step both ways must hold the same weights
    step_stacked(ens, opt, batches[0])
    step_sequential(models, opts, batches[0])
    for i, model in enumerate(models):
        for (name, p), q in zip(ens.net.member(i).named_parameters(), model.net.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=f"member {i} {name}")

    per_step = {"vectorised": [], "sequential": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        for b in batches:
            step_stacked(ens, opt, b)
        per_step["vectorised"].append((time.perf_counter() - start) / args.steps)
        start = time.perf_counter()
        for b in batches:
            step_sequential(models, opts, b)
        per_step["sequential"].append((time.perf_counter() - start) / args.steps)
    ratios = [s / v for s, v in zip(per_step["sequential"], per_step["vectorised"])]
    print(
        f"{args.members} Multi-LeNets, combiner={args.combiner}, batch {args.batch}, "
        f"{args.steps} steps × {args.rounds} rounds, torch threads {torch.get_num_threads()}"
    )
    for way, times in per_step.items():
        print(f"  {way:>10}: " + ", ".join(f"{1e3 * t:.1f}" for t in times) + " ms/step")
    print(
        "  sequential / vectorised: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f"; median {statistics.median(ratios):.2f} (target >= 3)"
    )


if __name__ == "__main__":
    main()
