"""Batches of example indices for one rank of a DDP group, the same global batches whatever the
number of ranks: the sampler the tasks' data modules share; and the data module of problems
without data (one empty batch per optimizer step)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from moo_lightning.errors import ConfigError


class StepBatches(L.LightningDataModule):
    """For a problem without data (the synthetic toys): one empty batch per optimizer step.
    ``steps``: how many; None (what the configs use): the trainer's step budget
    ``trainer.max_steps``, the budget key of every task."""

    def __init__(self, steps: int | None = None):
        super().__init__()
        if steps is not None and not (_whole(steps) and steps >= 1):
            raise ValueError(f"steps must be an integer >= 1 or None. Found {steps!r}")
        self.steps = steps

    @staticmethod
    def check_budget(max_steps) -> int:
        """``trainer.max_steps`` as the budget of a problem without data (the CLI checks it
        before anything is built; a Trainer built by hand is checked when the data is asked)."""
        if not (_whole(max_steps) and max_steps >= 1):
            raise ConfigError(
                "trainer.max_steps is the step budget of a problem without data (one empty "
                f"batch per step): an integer >= 1. Found {max_steps!r}"
            )
        return max_steps

    def train_dataloader(self):
        steps = self.steps
        if steps is None:
            steps = self.check_budget(self.trainer.max_steps if self.trainer is not None else None)
        return DataLoader(torch.zeros(steps), batch_size=1)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class IndexBatches:
    """Lists of indices, one batch at a time, for rank ``rank`` of ``world``.

    Shuffled (``seed`` given): each epoch a permutation drawn from (seed, epoch) is cut into
    ceil(n / batch_size) global batches of near-equal size (no runt last batch whose noisy
    gradient would weigh as much as a full one's); each rank takes its strided share, so any
    number of ranks takes the same steps over the same data. In order (``seed`` None): the
    rank's strided share of 0..n−1 in batches of ``batch_size``, every example exactly once."""

    def __init__(self, n: int, batch_size: int, seed: int | None, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.epoch = rank, world, 0
        if seed is not None:
            self.num_batches = max(1, -(-n // batch_size))
            if n // self.num_batches < world:
                raise ValueError(
                    f"batches of {n // self.num_batches} from {n} examples cannot be shared "
                    f"by {world} ranks"
                )
        else:
            self.num_batches = -(-len(range(rank, n, world)) // batch_size)

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at every epoch start
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        if self.seed is None:
            mine = np.arange(self.rank, self.n, self.world)
            for start in range(0, len(mine), self.batch_size):
                yield mine[start : start + self.batch_size].tolist()
            return
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for batch in np.array_split(perm, self.num_batches):
            yield batch[self.rank :: self.world].tolist()
