"""Multi-MNIST data: two digits composed on one canvas, seeded pairs and disjoint splits, the data
module's batches and loaders, the official splits and rank shares, the real test split."""

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything

from moo_lightning.mnist import read_mnist
from moo_lightning.tasks.multi_mnist.data import (
    TEST_SPLIT_NOTE,
    TRAIN_SPLIT_NOTE,
    IndexBatches,
    MultiMNIST,
    build_splits,
    compose,
    sample_pairs,
)
from tests.helpers import random_digits, write_mnist_split

REAL_MNIST = Path("/work/shared/data/mnist")


# --- composition ----------------------------------------------------------------------------------


def test_digits_land_top_left_and_bottom_right_with_max_on_overlap():
    images = np.zeros((4, 28, 28), np.uint8)
    labels = np.array([3, 7, 1, 9], np.uint8)
    images[0, 2, 5] = 255  # A's pixel (2, 5) stays at (2, 5)
    images[1, 2, 5] = 254  # B's pixel (2, 5) moves to (8, 11)
    images[2, 10, 12], images[3, 4, 6] = 100, 200  # both map to canvas (10, 12)
    images[2, 20, 20], images[3, 14, 14] = 200, 50  # both map to canvas (20, 20)
    canvas, pair_labels = compose(images, labels, np.array([[0, 1], [2, 3], [1, 0]]))
    assert canvas.shape == (3, 36, 36) and canvas.dtype == np.uint8
    assert pair_labels.tolist() == [[3, 7], [1, 9], [7, 3]] and pair_labels.dtype == np.int64
    assert np.argwhere(canvas[0]).tolist() == [[2, 5], [8, 11]]
    assert canvas[0, 2, 5] == 255 and canvas[0, 8, 11] == 254
    assert canvas[1, 10, 12] == 200 and canvas[1, 20, 20] == 200  # the brighter one wins
    assert np.count_nonzero(canvas[1]) == 2
    assert canvas[2, 2, 5] == 254 and canvas[2, 8, 11] == 255  # roles swap with the order
    # a full digit covers exactly rows/cols 0..27 (A) and 6..33 (B)
    full = np.full((2, 28, 28), 9, np.uint8)
    a, _ = compose(full, labels[:2], np.array([[0, 1]]))
    rows = np.flatnonzero(a[0].any(axis=1))
    assert rows.min() == 0 and rows.max() == 33 and not a[0, 34:].any() and not a[0, :, 34:].any()


def test_pairs_are_distinct_digits_and_seeded():
    pairs = sample_pairs(5, 4000, np.random.default_rng(0))
    assert pairs.shape == (4000, 2) and (pairs[:, 0] != pairs[:, 1]).all()
    assert pairs.min() == 0 and pairs.max() == 4
    assert len({tuple(p) for p in pairs.tolist()}) == 20  # every ordered pair of 5 occurs
    assert np.array_equal(pairs, sample_pairs(5, 4000, np.random.default_rng(0)))


def test_splits_are_deterministic_seeded_and_sources_disjoint():
    images, labels = random_digits(200)
    # enough composites that every digit of each source is drawn (checked below)
    a = build_splits(images, labels, 1000, 50, 400, test_fraction=0.25, split_seed=1)
    b = build_splits(images, labels, 1000, 50, 400, test_fraction=0.25, split_seed=1)
    c = build_splits(images, labels, 1000, 50, 400, test_fraction=0.25, split_seed=2)
    assert {k: len(v) for k, v in a.items()} == {"train": 1000, "val": 50, "test": 400}
    for k in a:
        assert torch.equal(a[k].images, b[k].images) and torch.equal(a[k].labels, b[k].labels)
        assert not torch.equal(a[k].images, c[k].images)
        # the provenance is true: each image is the composite of the digits it names
        canvas, pair_labels = compose(images, labels, a[k].digits)
        assert np.array_equal(canvas, a[k].images.numpy())
        assert np.array_equal(pair_labels, a[k].labels.numpy())
    train, val, test = (set(a[k].digits.ravel().tolist()) for k in ("train", "val", "test"))
    assert not (train | val) & test
    assert len(test) == 50 and len(train) == 150  # 25% of the 200 digits / the rest
    # the test composites do not depend on num_train (separate random streams)
    d = build_splits(images, labels, 100, 50, 400, test_fraction=0.25, split_seed=1)
    assert torch.equal(a["test"].images, d["test"].images)
    with pytest.raises(ValueError, match="leaves 1 digit.* test source"):
        build_splits(images[:10], labels[:10], 5, 5, 5, test_fraction=0.1)


# --- the data module ------------------------------------------------------------------------------


def test_data_module_batches_and_loaders(tmp_path):
    write_mnist_split(tmp_path, n=120, gz=True)
    kw = dict(num_train=100, val_size=30, num_test=45, batch_size=32, eval_batch_size=20)
    dm = MultiMNIST(str(tmp_path), **kw)
    dm.setup()
    assert dm.source_note == TEST_SPLIT_NOTE and not dm.cache_hit
    seed_everything(5, verbose=False)  # the CLI seeds every run with its seed
    loader = dm.train_dataloader()
    batches = list(loader)
    assert [len(b["labels"]) for b in batches] == [25, 25, 25, 25]  # near-equal, no runt
    x, y = batches[0]["images"], batches[0]["labels"]
    assert x.shape == (25, 1, 36, 36) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and y.shape == (25, 2) and y.dtype == torch.int64
    order = torch.cat([b["labels"] for b in batches])
    assert not torch.equal(order, dm.splits["train"].labels)  # shuffled
    seed_everything(5, verbose=False)
    torch.rand(1000)  # draws between seeding and the loader (a model's init; DDP reseeds there)
    again = torch.cat([b["labels"] for b in dm.train_dataloader()])
    assert torch.equal(order, again)  # the run's seed fixes the order, not the draws before
    seed_everything(6, verbose=False)
    assert not torch.equal(order, torch.cat([b["labels"] for b in dm.train_dataloader()]))
    loader.batch_sampler.set_epoch(1)  # what Lightning calls at every epoch start
    assert not torch.equal(order, torch.cat([b["labels"] for b in loader]))  # new epoch order
    val = list(dm.val_dataloader())
    assert [len(b["labels"]) for b in val] == [20, 10]
    assert torch.equal(torch.cat([b["labels"] for b in val]), dm.splits["val"].labels)
    expect = dm.splits["test"].images[:20].unsqueeze(1).float() / 255
    assert torch.equal(next(iter(dm.test_dataloader()))["images"], expect)
    # a later job of the same process reuses the composition
    again = MultiMNIST(str(tmp_path), **kw)
    again.setup()
    assert again.cache_hit and again.splits["train"] is dm.splits["train"]


def test_official_splits_and_rank_shares(tmp_path):
    train_images, _ = write_mnist_split(tmp_path, "train", n=60, seed=1)
    test_images, _ = write_mnist_split(tmp_path, "t10k", n=20, seed=2)
    dm = MultiMNIST(str(tmp_path), 50, 10, 30, train_split="train", cache=False)
    dm.setup()
    assert dm.source_note == TRAIN_SPLIT_NOTE
    first = dm.splits["test"].digits[0]
    canvas, _ = compose(test_images, np.zeros(20, np.uint8), first[None])
    assert np.array_equal(canvas[0], dm.splits["test"].images[0].numpy())
    assert dm.splits["train"].digits.max() >= 20  # indices into the 60 training digits
    # two ranks: disjoint shares of the same global batches, same number of steps
    shares = [list(IndexBatches(50, 16, seed=3, rank=r, world=2)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 4
    seen = sorted(i for share in shares for b in share for i in b)
    assert seen == list(range(50))
    evals = [i for r in (0, 1) for b in IndexBatches(11, 4, None, r, 2) for i in b]
    assert sorted(evals) == list(range(11))


# --- the real test split --------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"{REAL_MNIST} (MNIST test split) absent")
def test_real_mnist_test_split():
    images, labels = read_mnist(REAL_MNIST, "t10k")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # the folder's README
    assert np.bincount(labels, minlength=10).tolist() == counts
    dm = MultiMNIST(str(REAL_MNIST), num_train=3000, val_size=300, num_test=2000, cache=False)
    dm.setup()
    assert dm.source_note == "built from the MNIST test split"
    train, test = dm.splits["train"], dm.splits["test"]
    assert not set(train.digits.ravel()) & set(test.digits.ravel())
    batch = next(iter(dm.test_dataloader()))
    x = batch["images"]
    assert x.shape == (1000, 1, 36, 36) and x.min() == 0 and x.max() == 1
    assert 0.05 < x.mean() < 0.3  # two digits' ink: MNIST is about 13% ink per digit
    for split in (train, test):
        for t in (0, 1):
            share = np.bincount(split.labels[:, t].numpy(), minlength=10) / len(split)
            assert share.min() > 0.05 and share.max() < 0.17
