"""The domain-generalisation discriminator's step on 2 CPU processes (gloo), for test_ddp.py.
Module level so that torch.multiprocessing.spawn can pickle it."""

import torch
import torch.distributed as dist

from moo_lightning.combiners import PNG
from moo_lightning.tasks.dg.module import JigsawModule


def jigsaw_module() -> JigsawModule:
    torch.manual_seed(0)
    return JigsawModule(PNG(), [1.0, 0.7], 10, 30, in_channels=1, width=4, criterion="adversarial")


def features(step: int, rank: int, d: int):
    """Rank ``rank``'s share at step ``step``: detached features and which images are ordered;
    None where that share holds one kind of image only (no discriminator batch)."""
    g = torch.Generator().manual_seed(100 * step + rank)
    if (step, rank) in SHARES_WITHOUT_BOTH_KINDS:
        return None
    z = torch.randn(6 + rank, d, generator=g)  # shares of 6 and 7
    ordered = torch.arange(6 + rank) % 3 != 0
    return z, ordered


# step 0: both ranks step D; step 1: rank 1's share has one kind only (it adds zeros);
# step 2: no rank has both kinds (nobody steps)
STEPS = 3
SHARES_WITHOUT_BOTH_KINDS = {(1, 1), (2, 0), (2, 1)}


def run(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    try:
        m = jigsaw_module()
        m._d_opt = torch.optim.Adam(m.discriminator.parameters(), lr=m.discriminator_lr,
                                    betas=(0.5, 0.999))  # fmt: skip
        stepped = []
        for step in range(STEPS):
            m._d_batch = features(step, rank, m.backbone.out_features)
            stepped.append(m.discriminator_step())
        state = {k: v.clone() for k, v in m.discriminator.state_dict().items()}
        adam_steps = [int(s["step"]) for s in m._d_opt.state_dict()["state"].values()]
        torch.save({"state": state, "stepped": stepped, "adam_steps": adam_steps},
                   f"{out}/rank{rank}.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()
