"""Batches of example indices for one rank of a DDP group, the same global batches whatever the
number of ranks: the sampler the tasks' data modules share."""

from __future__ import annotations

import numpy as np


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
