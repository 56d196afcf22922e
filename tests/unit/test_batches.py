"""The training loader of a data module of one's own (batches.train_loader): the shared sampler's
global batches, each rank's share, an order fixed by (seed, epoch) that changes every epoch of a
fit and resumes from any checkpoint; the one warning a resumed run gives when its training loader
shuffles with torch's random samplers, which a checkpoint cannot put back (never for the loaders
the built-in tasks build), and the one a fit gives for a batch sampler whose epoch Lightning
never sets."""

import logging

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

from moo_lightning.batches import (
    EpochLoader,
    IndexBatches,
    StepBatches,
    batch_loader,
    epoch_never_set,
    train_loader,
    unresumable_sampler,
    warn_if_unresumable,
)
from moo_lightning.combiners import LinearScalarization
from moo_lightning.module import MultiObjectiveModule
from moo_lightning.tasks.glue.data import ClassBalancedBatchSampler
from tests.helpers import quiet_trainer, write_mnist_split

WARNING = "cannot restore its place"


def _rows(n=50):
    return TensorDataset(torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n))


def _order(loader):
    return [b[1].tolist() for b in loader]


class _Ranks:  # what train_loader reads of a trainer
    def __init__(self, rank, world):
        self.global_rank, self.world_size = rank, world


def test_train_loader_serves_the_shared_samplers_batches_in_an_order_fixed_by_seed_and_epoch():
    loader = train_loader(_rows(), 16, seed=3)
    batches = _order(loader)
    assert batches == list(IndexBatches(50, 16, seed=3))  # collated examples, one per index
    assert [len(b) for b in batches] == [13, 13, 12, 12]  # near-equal, no runt
    assert batches == _order(train_loader(_rows(), 16, seed=3))
    loader.batch_sampler.set_epoch(1)  # what Lightning calls at every epoch start
    assert _order(loader) != batches and sorted(sum(_order(loader), [])) == list(range(50))
    # two ranks: each its share of the same global batches, the same number of steps
    shares = [_order(train_loader(_rows(), 16, _Ranks(r, 2), seed=3)) for r in (0, 1)]
    assert [sorted(a + b) for a, b in zip(*shares)] == [sorted(b) for b in batches]


class _Recorder(L.LightningModule):
    """Records the example indices of every training batch, by epoch."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[list[int]]] = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).append(batch[1].tolist())
        return (self.w * 0).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(kind: str, trainer=None):
    if kind == "train_loader":  # a data module of one's own; the guide's
        return train_loader(_rows(48), 16, trainer, seed=3)
    if kind == "glue":  # the GLUE tasks' class-balanced batch sampler
        labels = np.arange(48) % 2
        sampler = ClassBalancedBatchSampler(labels, 16, 3, 1, 0)
        return EpochLoader(_rows(48), sampler, trainer=trainer)
    # Multi-MNIST and DG: a sampler of whole batches, the dataset indexed by a list
    return EpochLoader(_rows(48), IndexBatches(48, 16, 3), batches=False, trainer=trainer)


class _Overfit(_Recorder):
    def validation_step(self, batch, batch_idx):
        self.validated = batch[1].tolist()


@pytest.mark.parametrize("kind", ["train_loader", "glue", "whole_batches"])
def test_overfitting_takes_the_same_batch_every_epoch_and_keeps_the_loaders(kind):
    """debug=overfit (Lightning's overfit_batches) trains on each epoch's first batch: it must
    be one batch, not a fresh draw per epoch; and Lightning, which rebuilds any loader whose
    sampler is not sequential, used to fail on the whole-batch loaders of Multi-MNIST and DG."""
    trainer = quiet_trainer(max_epochs=3, overfit_batches=1)
    module = _Overfit()
    val = batch_loader(_rows(20), IndexBatches(20, 8, None))  # in order, whole batches
    trainer.fit(module, _loader(kind, trainer), val)
    first = module.seen[0]
    assert len(first) == 1 and len(first[0]) == 16
    assert [module.seen[e] for e in range(3)] == [first] * 3
    assert module.validated == list(range(8))
    # without overfitting, the same loader changes its batches every epoch
    fresh = _Recorder()
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(fresh, _loader(kind, trainer))
    assert fresh.seen[0] != fresh.seen[1]


@pytest.mark.parametrize("kind", ["train_loader", "glue", "whole_batches"])
def test_every_epoch_of_a_fit_draws_its_own_batches(kind):
    """Lightning sets the epoch of loader.sampler and loader.batch_sampler.sampler only: a batch
    sampler of one's own used to serve epoch 0's batches in every epoch."""
    module = _Recorder()
    quiet_trainer(max_epochs=3).fit(module, _loader(kind))
    epochs = [module.seen[e] for e in range(3)]
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]
    for batches in epochs:  # each epoch: every example once
        assert sorted(sum(batches, [])) == list(range(48))


class _Scheduled(_Recorder):
    """With a learning-rate schedule sized by ``estimated_stepping_batches``, which makes
    Lightning build (and iterate) the training loader before the checkpoint is restored."""

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        total = self.trainer.estimated_stepping_batches
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / (total + 1))
        return {"optimizer": opt, "lr_scheduler": sched}


class _Rows(L.LightningDataModule):
    def __init__(self, workers: int = 0):
        super().__init__()
        self.workers = workers

    def train_dataloader(self):  # 5 batches of 8 per epoch
        return train_loader(_rows(40), 8, self.trainer, seed=3, num_workers=self.workers)

    def val_dataloader(self):
        return DataLoader(_rows(8), batch_size=8)


CUTS = {  # where the checkpoint is taken, and the runs' budgets
    # between two validations of an epoch (every 3 steps; 5 batches per epoch): the GLUE tasks'
    # place, here with an epoch budget and a schedule (the loader built before the restore)
    "validation": (
        dict(every_n_epochs=1),
        dict(max_epochs=3, val_check_interval=3, check_val_every_n_epoch=None),
        dict(max_steps=8),
    ),
    # after a training step (written before the step counts as completed)
    "train_steps": (dict(every_n_train_steps=7), dict(max_epochs=3, limit_val_batches=0), {}),
    # at an epoch's end, with a worker process drawing the indices when the iterator is made
    "epoch_end": (
        dict(every_n_epochs=1),
        dict(max_epochs=3, limit_val_batches=0),
        dict(max_epochs=2),
    ),
}


@pytest.mark.parametrize("cut", list(CUTS))
def test_a_fit_resumed_from_a_checkpoint_takes_the_batches_the_uninterrupted_fit_took(
    cut, tmp_path
):
    from lightning.pytorch.callbacks import ModelCheckpoint

    saving, budget, shorter = CUTS[cut]
    workers = 1 if cut == "epoch_end" else 0

    def fit(module, ckpt_path=None, **extra):
        settings = {**budget, **extra}
        callbacks = settings.pop("callbacks", [])
        trainer = quiet_trainer(callbacks=callbacks, num_sanity_val_steps=0, **settings)
        trainer.fit(module, _Rows(workers), ckpt_path=ckpt_path)
        return module.seen

    # workers draw the indices when the iterator is made, which a schedule sized by
    # estimated_stepping_batches does before the restore: that pair is not exact (documented)
    make = _Recorder if workers else _Scheduled
    full = fit(make())
    saver = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, **saving)
    fit(make(), callbacks=[saver], enable_checkpointing=True, **(shorter or {"max_steps": 7}))
    ckpt = max(tmp_path.glob("*.ckpt"), key=lambda p: int(p.stem.split("step=")[1]))
    resumed = fit(make(), ckpt_path=str(ckpt))
    done = int(ckpt.stem.split("step=")[1])
    assert 0 < done < 15 and (done % 5 != 0) == (cut != "epoch_end")  # inside an epoch or not
    flat = [b for e in sorted(full) for b in full[e]]
    assert [b for e in sorted(resumed) for b in resumed[e]] == flat[done:]


def test_train_loaders_default_seed_is_the_run_seeds_not_a_draw_from_the_global_state(monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    L.seed_everything(0, verbose=False)  # what the CLI does with seed=0
    first = _order(train_loader(_rows(), 16))
    torch.manual_seed(123)  # DDP resets the global state after the model is built; epochs reseed
    assert _order(train_loader(_rows(), 16)) == first
    L.seed_everything(1, verbose=False)
    assert _order(train_loader(_rows(), 16)) != first
    monkeypatch.delenv("PL_GLOBAL_SEED")  # no seed_everything: torch's initial seed
    torch.manual_seed(0)
    assert _order(train_loader(_rows(), 16)) == first


def test_only_torchs_random_samplers_are_unresumable():
    rows = _rows()
    shuffled = DataLoader(rows, batch_size=16, shuffle=True)
    assert type(unresumable_sampler(shuffled)).__name__ == "RandomSampler"
    subset = DataLoader(rows, batch_size=16, sampler=SubsetRandomSampler(range(40)))
    assert isinstance(unresumable_sampler(subset), SubsetRandomSampler)
    assert unresumable_sampler({"a": train_loader(rows, 16, seed=0), "b": shuffled}) is not None
    ordered = DataLoader(rows, batch_size=16)
    assert unresumable_sampler(ordered) is None
    assert unresumable_sampler(train_loader(rows, 16, seed=0)) is None
    assert unresumable_sampler(None) is None


def test_the_built_in_tasks_loaders_are_resumable(tmp_path):
    from torch.utils.data.distributed import DistributedSampler

    from moo_lightning.tasks.glue.data import ClassBalancedBatchSampler
    from moo_lightning.tasks.multi_mnist.data import MultiMNIST

    write_mnist_split(tmp_path, n=120)
    mnist = MultiMNIST(str(tmp_path), num_train=60, val_size=20, num_test=20, cache=False)
    mnist.setup()
    rows = _rows(40)
    labels = np.arange(40) % 2
    loaders = {
        "multi_mnist (and dg: the sampler yields whole batches)": mnist.train_dataloader(),
        "glue (a class-balanced batch sampler)": DataLoader(
            rows, batch_sampler=ClassBalancedBatchSampler(labels, 8, seed=0)
        ),
        "toys (one empty batch per step)": StepBatches(steps=3).train_dataloader(),
        "DistributedSampler": DataLoader(
            rows, batch_size=8, sampler=DistributedSampler(rows, num_replicas=1, rank=0)
        ),
    }
    for name, loader in loaders.items():
        assert unresumable_sampler(loader) is None, name
        assert not warn_if_unresumable(loader), name


class _Tiny(MultiObjectiveModule):
    def __init__(self):
        opt = lambda ps: torch.optim.SGD(ps, lr=0.1)  # noqa: E731
        super().__init__(LinearScalarization(), [0.5, 0.5], optimizer=opt)
        self.net = torch.nn.Linear(1, 2)

    def objectives(self, batch):
        out = self.net(batch[0])
        return torch.stack([out[:, 0].pow(2).mean(), (out[:, 1] - 1).pow(2).mean()])


class _Data(L.LightningDataModule):
    def __init__(self, resumable):
        super().__init__()
        self.resumable = resumable

    def train_dataloader(self):
        if self.resumable:
            return train_loader(_rows(24), 8, self.trainer)
        return DataLoader(_rows(24), batch_size=8, shuffle=True)


def _fit(resumable, ckpt_path=None, checkpoints=None):
    from lightning.pytorch.callbacks import ModelCheckpoint

    L.seed_everything(0, verbose=False)
    module = _Tiny()
    callbacks = [ModelCheckpoint(dirpath=checkpoints, save_top_k=-1)] if checkpoints else []
    trainer = quiet_trainer(
        max_epochs=2, callbacks=callbacks, enable_checkpointing=bool(checkpoints)
    )
    trainer.fit(module, datamodule=_Data(resumable), ckpt_path=ckpt_path, weights_only=True)


def test_a_resumed_fit_warns_once_when_its_loader_shuffles_with_a_random_sampler(tmp_path, caplog):
    first = tmp_path / "epoch=0-step=3.ckpt"
    for resumable in (False, True):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="moo_lightning"):
            _fit(resumable, checkpoints=tmp_path / str(resumable))
            assert WARNING not in caplog.text  # a fresh run: nothing to say
            _fit(resumable, ckpt_path=str(tmp_path / str(resumable) / first.name))
        said = [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]
        if resumable:
            assert said == []
        else:
            assert len(said) == 1 and "\n" not in said[0], said
            assert "RandomSampler" in said[0] and "moo_lightning.batches.train_loader" in said[0]


class _OwnBatches(L.LightningDataModule):
    """A batch sampler of one's own with set_epoch, passed to a plain DataLoader."""

    def train_dataloader(self):
        return DataLoader(_rows(24), batch_sampler=IndexBatches(24, 8, seed=3))


def test_a_batch_sampler_whose_epoch_lightning_never_sets_is_one_warning(caplog):
    plain = DataLoader(_rows(24), batch_sampler=IndexBatches(24, 8, seed=3))
    assert isinstance(epoch_never_set(plain), IndexBatches)
    assert epoch_never_set([train_loader(_rows(24), 8, seed=3)]) is None  # EpochLoader
    assert epoch_never_set(DataLoader(_rows(24), batch_size=8, shuffle=True)) is None
    with caplog.at_level(logging.WARNING, logger="moo_lightning"):
        quiet_trainer(max_epochs=1).fit(_Tiny(), datamodule=_OwnBatches())
    said = [r.getMessage() for r in caplog.records if "never calls" in r.getMessage()]
    assert len(said) == 1 and "IndexBatches" in said[0] and "EpochLoader" in said[0], said
