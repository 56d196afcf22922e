"""A small multi-objective model trained with 1 or 2 CPU processes (gloo), for the DDP tests.
Module level so that ddp_spawn can pickle it."""

import functools
from pathlib import Path

import lightning as L
import torch

from moo_lightning.module import MultiObjectiveModule
from moo_lightning.tasks.glue.objectives import MOOContrastive
from tests.helpers import build_combiner


class TwoHeads(MultiObjectiveModule):
    """Two regression heads on a shared body, or (``contrastive`` set to "local" / "global") a
    classifier trained on the ℓ_pos / ℓ_neg objectives over each rank's batch or the global one."""

    def __init__(self, combiner: str, out_dir: str, scope="all", contrastive=None, criterion=False):
        super().__init__(
            build_combiner(combiner),
            [0.3, 0.7],
            optimizer=functools.partial(torch.optim.SGD, lr=0.05),
            gradient_scope=scope,
        )
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh())
        self.heads = torch.nn.Linear(16, 2)
        self.out_dir = out_dir
        self.weight_history = []
        self.criterion = criterion  # a criterion of the parameters: the features' mean square
        self.criterion_weight = 0.5  # its weight as a regulariser with LS
        self.contrastive = None
        if contrastive is not None:
            self.contrastive = MOOContrastive(0.5, 0.5, global_batch=contrastive == "global")

    def objectives(self, batch):
        x, y = batch
        z = self.body(x)
        self._representation = z
        if self.criterion:
            self._parameter_criterion = z.pow(2).mean()
        out = self.heads(z)
        if self.contrastive is not None:
            labels = (y[:, 0] > 0).long()
            return self.contrastive(out, z, labels)
        l1 = (out[:, 0] - y[:, 0]).pow(2).mean() + 0.1
        l2 = (out[:, 1] - y[:, 1]).abs().mean() + 0.1
        return torch.stack([l1, l2])

    def multi_objective_step(self, losses):
        results = super().multi_objective_step(losses)
        if results is not None:  # None: a skipped step
            self.weight_history.append(results[0].weights.detach().clone())
        return results

    def train_dataloader(self):
        # rank r takes examples r, r + R, ...: step k covers exactly the 16 examples a single
        # process sees at step k (Lightning's automatic sampler would shuffle)
        world = self.trainer.world_size
        sampler = torch.utils.data.DistributedSampler(
            dataset(), num_replicas=world, rank=self.global_rank, shuffle=False
        )
        return torch.utils.data.DataLoader(dataset(), batch_size=16 // world, sampler=sampler)

    def on_train_end(self):
        rank = self.global_rank
        torch.save(
            {
                "params": [p.detach().clone() for p in self.parameters()],
                "weights": torch.stack(self.weight_history),
            },
            Path(self.out_dir) / f"rank{rank}_of{self.trainer.world_size}.pt",
        )


def dataset():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 6, generator=g)
    y = torch.stack([x[:, 0] - x[:, 1], x[:, 2] * x[:, 3]], dim=1)
    # the classes of the contrastive variant (sign of y[:, 0]) alternate in pairs, so that every
    # rank's half of every global batch holds two examples of each class
    y[:, 0] = torch.where(torch.arange(128) % 4 < 2, 1.0, -1.0) * (0.5 + y[:, 0].abs())
    return torch.utils.data.TensorDataset(x, y)


def train(
    combiner: str, devices: int, out_dir: str, scope="all", contrastive=None, criterion=False
):
    """Same global batches either way: 16 per step (1 process × 16, or 2 processes × 8)."""
    fit_on_ranks(TwoHeads(combiner, out_dir, scope, contrastive, criterion), devices)


def fit_on_ranks(module, devices: int) -> None:
    """Two epochs of ``module`` in one process or on ``devices`` ddp_spawn ranks (the module
    makes its own global batches: no distributed sampler)."""
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.fit(module)


def gather_worker(rank: int, world: int, port: int, out_dir: str):
    """Rank r holds 3 + 2r rows; after the gather every rank sees all rows in rank order, and
    the gradient of Σ c ⊙ z_all w.r.t. its own rows is R × its slice of c."""
    import os

    import torch.distributed as dist

    from moo_lightning.tasks.glue.objectives import gather_global_batch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    n = 3 + 2 * rank
    z = torch.full((n, 4), float(rank), requires_grad=True)
    labels = torch.full((n,), rank)
    z_all, y_all = gather_global_batch(z, labels)
    coeff = torch.arange(z_all.numel(), dtype=torch.float32).reshape(z_all.shape)
    (coeff * z_all).sum().backward()
    torch.save(
        {"z_all": z_all.detach(), "y_all": y_all, "grad": z.grad, "coeff": coeff},
        Path(out_dir) / f"gather{rank}.pt",
    )
    dist.destroy_process_group()
