"""A combiner, a model and data of your own, run by train.py (see README.md beside this file)."""

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from moo_lightning.batches import train_loader
from moo_lightning.combiners.base import Combiner
from moo_lightning.module import MultiObjectiveModule


class LossProportional(Combiner):
    """Weights proportional to the losses: the objective that is worse off gets more weight."""

    name = "loss_prop"
    needs_gram = False  # the weights ignore the gradients: one ordinary backward per step
    uses_preference = False  # runs record no preference; a sweep over it is refused
    reads_losses = True  # (log_gram refuses it as an inner combiner)

    def _combine(self, losses, gram, preference):
        w = losses / losses.sum()  # float64 numpy arrays in, weights (m,) out
        return w, {"max_weight": float(w.max())}  # diagnostics: logged as train/combiner/...


class TwoTargets(MultiObjectiveModule):
    """Two regression targets: a shared trunk, one head per target."""

    headline_metrics = ("test/mse_0", "test/mse_1")  # shown in the end-of-run summary

    def __init__(self, combiner, preference, hidden: int = 32, **kwargs):
        super().__init__(combiner, preference, num_objectives=2, **kwargs)
        self.trunk = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.Tanh())
        self.heads = torch.nn.ModuleList(torch.nn.Linear(hidden, 1) for _ in range(2))

    def objectives(self, batch):  # the loss vector (m,)
        x, y = batch
        self._representation = self.trunk(x)  # for gradient_scope=shared / representation
        out = [head(self._representation)[:, 0] for head in self.heads]
        return torch.stack([F.mse_loss(out[0], y[:, 0]), F.l1_loss(out[1], y[:, 1])])

    def validation_step(self, batch, batch_idx):
        for i, loss in enumerate(self.objectives(batch)):
            self.log(f"val/loss_{i}", loss)

    def test_step(self, batch, batch_idx):
        x, y = batch
        z = self.trunk(x)
        for i, head in enumerate(self.heads):
            self.log(f"test/mse_{i}", F.mse_loss(head(z)[:, 0], y[:, i]))


class TwoTargetsData(L.LightningDataModule):
    """y = (Σ x[:4], Σ x[4:]) + noise; the same rows for every seed (``data_seed``)."""

    def __init__(self, n: int = 640, batch_size: int = 32, data_seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(data_seed)
        x = torch.randn(n, 8, generator=g)
        y = torch.stack([x[:, :4].sum(1), x[:, 4:].sum(1)], 1) + 0.1 * torch.randn(
            n, 2, generator=g
        )
        cut = [int(0.7 * n), int(0.85 * n)]
        self.parts = [TensorDataset(x[a:b], y[a:b]) for a, b in zip([0, *cut], [*cut, n])]
        self.batch_size = batch_size

    def train_dataloader(self):
        # shuffled from (run seed, epoch), not DataLoader(shuffle=True): resumes and DDP agree
        return train_loader(self.parts[0], self.batch_size, self.trainer)

    def val_dataloader(self):
        return DataLoader(self.parts[1], batch_size=256)

    def test_dataloader(self):
        return DataLoader(self.parts[2], batch_size=256)
