"""Batches of example indices for one rank of a DDP group, the same global batches whatever the
number of ranks: the sampler the tasks' data modules share, ``train_loader`` (the training
DataLoader of a data module of one's own, built on it), and the data module of problems without
data (one empty batch per optimizer step)."""

from __future__ import annotations

import logging
import os

import lightning as L
import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    RandomSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from moo_lightning.errors import ConfigError

log = logging.getLogger("moo_lightning")


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


class _EpochOrder:
    """A sampler or batch sampler whose order is a function of (seed, epoch) (``set_epoch``,
    ``epoch``; :class:`IndexBatches`, GLUE's class-balanced batches), made to take the trainer's
    epoch and to start a restored epoch where its checkpoint left it (:class:`EpochLoader`)."""

    def __init__(self, order):
        if not callable(getattr(order, "set_epoch", None)):
            raise TypeError(f"{type(order).__name__} has no set_epoch(epoch)")
        self.order = order
        # Lightning sets the epoch of loader.sampler and of loader.batch_sampler.sampler only:
        # as a batch sampler this object is found there
        self.sampler = self
        # () -> (epoch or None, batches to skip), asked when a pass starts (EpochLoader's)
        self.place = None

    @property
    def epoch(self) -> int:
        return int(getattr(self.order, "epoch", 0))

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        # runs when the first batch is asked for (an iterator without workers asks once the
        # trainer has restored its progress; one with workers as soon as it is made)
        epoch, skip = self.place() if self.place is not None else (None, 0)
        if epoch is not None:
            self.set_epoch(epoch)
        served = iter(self.order)
        for _ in range(skip):
            next(served, None)
        yield from served


class EpochLoader(DataLoader):
    """A training DataLoader whose order is a function of (seed, epoch): ``order`` is a batch
    sampler (``batches=True``: it yields lists of indices, the examples are collated) or a
    sampler of whole batches (``batches=False``: the dataset takes a list of indices), with
    ``set_epoch`` and ``epoch``.

    Lightning calls ``set_epoch`` only on ``loader.sampler`` and ``loader.batch_sampler.sampler``,
    so a batch sampler of one's own would serve epoch 0's batches in every epoch; here it follows
    the trainer's epochs. And a run resumed from a checkpoint taken inside an epoch (between two
    validations, as the GLUE tasks validate every ``trainer.val_check_interval`` steps, or every
    n training steps) must take that epoch's remaining batches: each time Lightning starts
    iterating, the loader reads the epoch and the batches already done in it from ``trainer``'s
    restored progress when the first batch is asked for (the data module's trainer; None
    outside a fit: every pass starts an epoch, and a resumed fit restarts its epoch, with one
    warning). With ``num_workers`` > 0 the indices are drawn when the iterator is made, which a
    run budgeted in epochs with a learning-rate schedule (``estimated_stepping_batches``) does
    before the checkpoint is restored: keep ``num_workers`` 0 there for an exact resume."""

    def __init__(self, dataset, order, *, batches: bool = True, trainer=None, **kwargs):
        self._epoch_order = _EpochOrder(order)
        self._trainer = trainer
        self._epoch_order.place = self._place
        if not batches:  # the dataset builds each batch from its whole list of indices
            dataset, kwargs = WholeBatches(dataset), {**kwargs, "collate_fn": _as_is}
        # always a batch sampler: the loader's sampler stays sequential, which Lightning's
        # overfit_batches (debug=overfit) leaves in place rather than rebuilding the loader
        super().__init__(dataset, batch_sampler=self._epoch_order, **kwargs)

    def _place(self) -> tuple[int | None, int]:
        """(the epoch the trainer runs, the batches of it already done when it restarts inside
        it); (None, 0) outside a fit. Overfitting (``overfit_batches``: the first batches of
        every epoch) serves epoch 0's order in every epoch, so they are the same batches."""
        loop = getattr(self._trainer, "fit_loop", None)
        if loop is None:
            return None, 0
        if getattr(self._trainer, "overfit_batches", 0):
            return 0, 0
        epoch = int(loop.epoch_progress.current.processed)
        # the batches of this epoch the trainer has taken (0 at an epoch's start; the restored
        # count when it resumes inside one: the fetcher numbers the next batch after them)
        done = int(loop.epoch_loop.batch_progress.current.ready)
        limits = getattr(loop._combined_loader, "limits", None) or [len(self._epoch_order)]
        return epoch, done if 0 < done < min(len(self._epoch_order), *limits) else 0

    # Lightning's loader state: a loader with one is restored rather than restarted (and not
    # warned about); the place itself comes from the trainer's restored progress
    def state_dict(self) -> dict:
        if self._trainer is None and not getattr(self, "_warned", False):
            self._warned = True
            log.warning(
                "EpochLoader without a trainer: a run resumed from inside an epoch would "
                "restart that epoch; build it with the data module's trainer "
                "(train_loader(dataset, batch_size, self.trainer))"
            )
        return {"epoch": self._epoch_order.epoch}

    def load_state_dict(self, state: dict) -> None:
        pass


class WholeBatches(Dataset):
    """A dataset that builds a whole batch from a list of indices (``dataset[indices]``, one
    call, as Multi-MNIST's composites and the jigsaw images do), made loadable with a batch
    sampler: the DataLoader fetches a batch through ``__getitems__`` and ``collate_fn=_as_is``
    passes it on unchanged. (A sampler of whole batches with ``batch_size=None`` loads the same
    batches, but Lightning replaces every sampler but a sequential one when it overfits.)"""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices):
        return self.dataset[indices]

    def __getitems__(self, indices):
        return self.dataset[indices]


def _as_is(batch):
    return batch


def batch_loader(dataset, batches, **kwargs) -> DataLoader:
    """An evaluation DataLoader over a dataset that builds whole batches (:class:`WholeBatches`),
    in the order of the batch sampler ``batches`` (e.g. :class:`IndexBatches` with ``seed``
    None)."""
    return DataLoader(WholeBatches(dataset), batch_sampler=batches, collate_fn=_as_is, **kwargs)


def train_loader(dataset, batch_size: int, trainer=None, seed: int | None = None, **kwargs):
    """The training DataLoader of a data module of one's own: return it from
    ``train_dataloader`` as ``train_loader(dataset, batch_size, self.trainer)``.

    Shuffled global batches of about ``batch_size`` drawn by :class:`IndexBatches` (as the
    built-in tasks draw theirs), rank ``trainer.global_rank``'s share of each. Each epoch's order
    is a function of (seed, epoch) (:class:`EpochLoader`), so a run resumed from a checkpoint
    (``ckpt_path=last``, at an epoch's end or between two validations) draws the batches the
    uninterrupted run drew, and N DDP ranks take the steps one process takes. A plain
    ``DataLoader(shuffle=True)`` draws each epoch's order from the global random state, which a
    resume cannot put back where it was.

    ``seed`` None: :func:`run_seed`, the same on every rank and in a resumed run. ``trainer``
    None: one process. ``kwargs``: the DataLoader's other arguments (``collate_fn``,
    ``num_workers``, ...); the dataset is indexed one example at a time and the examples
    collated, as with ``batch_size``."""
    seed = run_seed() if seed is None else seed
    rank, world = (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)
    batches = IndexBatches(len(dataset), batch_size, seed, rank, world)
    return EpochLoader(dataset, batches, trainer=trainer, **kwargs)


def run_seed() -> int:
    """A seed for the order of the training batches, from the run's seed: the one
    ``seed_everything`` set last (Lightning keeps it in ``PL_GLOBAL_SEED``; the CLI calls it with
    ``seed``), else torch's initial seed. Not a draw from the global random state, which DDP
    resets after the model is built (one process and N ranks would draw different orders) and
    the module reseeds every step. Mixed with a constant of its own, so the order shares no
    stream with the combiners' draws from (run seed, step)."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    seed = int(seed) if seed is not None else torch.initial_seed()
    return int(np.random.SeedSequence([seed, 0x0BA7C4]).generate_state(1, np.uint64)[0] >> 2)


def step_seed(base_seed: int, step: int) -> int:
    """The seed of one training step's global randomness (dropout, ...), from the run's base
    seed and the global step: the module reseeds ``random``, numpy and torch with it before every
    batch. A function of (seed, step) only, so a resumed run and every DDP rank draw the
    uninterrupted run's numbers; mixed with a constant of its own (no stream shared with the
    batch order's or the combiners' seeds)."""
    mixed = np.random.SeedSequence([int(base_seed) % 2**64, int(step), 0x5EED57E9])
    return int(mixed.generate_state(1, np.uint32)[0])


# torch's samplers that draw their order from a generator's running state: a checkpoint holds
# no such state, so a resumed run draws another order than the uninterrupted run
_UNRESUMABLE = (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)


def _first(loaders, find):
    """``find`` over the loaders of a list or dict of them (as ``trainer.train_dataloader``):
    the first answer that is not None; None for anything else."""
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if not isinstance(loaders, (list, tuple)):
        return None
    return next((x for x in map(find, loaders) if x is not None), None)


def unresumable_sampler(loaders):
    """The first sampler of ``loaders`` (a DataLoader, or a list or dict of them, as
    ``trainer.train_dataloader``) whose order a resumed run cannot repeat: one of torch's random
    samplers (``DataLoader(shuffle=True)`` makes a RandomSampler) deciding the batches. None
    when every order is a function of the epoch (:class:`IndexBatches`, any sampler or batch
    sampler with ``set_epoch``) or fixed (no shuffling)."""
    if not isinstance(loaders, DataLoader):
        return _first(loaders, unresumable_sampler)
    deciding = loaders.batch_sampler
    if deciding is None:  # batch_size=None: the sampler yields whole batches
        deciding = loaders.sampler
    elif not hasattr(deciding, "set_epoch"):  # torch's BatchSampler: its sampler decides
        deciding = getattr(deciding, "sampler", deciding)
    if hasattr(deciding, "set_epoch"):
        return None
    return deciding if isinstance(deciding, _UNRESUMABLE) else None


def epoch_never_set(loaders):
    """The first batch sampler of ``loaders`` (as :func:`unresumable_sampler` takes them) that
    has ``set_epoch`` but that Lightning never calls: Lightning sets the epoch of
    ``loader.sampler`` and ``loader.batch_sampler.sampler`` only, so such a batch sampler serves
    its epoch-0 order in every epoch. None when there is none (:class:`EpochLoader` passes the
    epoch on)."""
    if not isinstance(loaders, DataLoader):
        return _first(loaders, epoch_never_set)
    if loaders.batch_sampler is None:
        return None
    batches = loaders.batch_sampler
    inner = getattr(batches, "sampler", None)
    if callable(getattr(batches, "set_epoch", None)) and not callable(
        getattr(inner, "set_epoch", None)
    ):
        return batches
    return None


def warn_if_epoch_never_set(loaders) -> bool:
    """One warning line when a training batch sampler's epoch would never change
    (:func:`epoch_never_set`); whether it warned. The module calls it when a fit starts."""
    batches = epoch_never_set(loaders)
    if batches is None:
        return False
    log.warning(
        "the training loader's batch sampler (%s) has set_epoch, which Lightning never calls on "
        "a batch sampler: every epoch would serve the same batches; wrap it as "
        "moo_lightning.batches.EpochLoader(dataset, batch_sampler, trainer=self.trainer)",
        type(batches).__name__,
    )
    return True


def warn_if_unresumable(loaders) -> bool:
    """One warning line when a resumed run's training batches cannot be the uninterrupted run's
    (``unresumable_sampler``); whether it warned. The module calls it when a fit resumes."""
    sampler = unresumable_sampler(loaders)
    if sampler is None:
        return False
    log.warning(
        "ckpt_path: the training batches are shuffled by torch's %s (as DataLoader(shuffle=True) "
        "does), which cannot restore its place, so this resumed run will not see the batches "
        "the uninterrupted run saw; return moo_lightning.batches.train_loader(dataset, "
        "batch_size, self.trainer) from train_dataloader (docs/extending/README.md, Data)",
        type(sampler).__name__,
    )
    return True
