import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from moo_lightning.mnist import read_idx, read_images, read_labels, read_mnist, write_idx
from moo_lightning.tasks.multi_mnist.data import (
    TEST_SPLIT_NOTE,
    TRAIN_SPLIT_NOTE,
    IndexBatches,
    MultiMNIST,
    build_splits,
    compose,
    sample_pairs,
)
from moo_lightning.tasks.multi_mnist.lenet import MultiLeNet, StackedMultiLeNet, member_seed

REAL_MNIST = Path("/work/shared/data/mnist")


def digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def mnist_folder(folder: Path, split: str = "t10k", n: int = 120, gz: bool = False, seed=0):
    images, labels = digits(n, seed)
    ext = ".gz" if gz else ""
    write_idx(folder / f"{split}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", labels)
    return images, labels


# --- IDX files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    images, labels = mnist_folder(tmp_path, n=7, gz=gz)
    got_images, got_labels = read_mnist(tmp_path, "t10k")
    assert got_images.dtype == np.uint8 and np.array_equal(got_images, images)
    assert np.array_equal(got_labels, labels)
    # the format itself: magic 0x00000803, then big-endian dimensions, then the bytes
    raw = (tmp_path / f"t10k-images-idx3-ubyte{'.gz' if gz else ''}").read_bytes()
    raw = gzip.decompress(raw) if gz else raw
    assert raw[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 7, 0, 0, 0, 28, 0, 0, 0, 28])
    assert raw[16:] == images.tobytes()


def _bad(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _header(ndim_magic: int, *dims: int) -> bytes:
    return bytes([0, 0, 8, ndim_magic]) + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize(
    ("reader", "data", "message"),
    [
        (read_images, _header(1, 3) + bytes(3), "magic number 2049.*expected IDX images"),
        (read_labels, _header(3, 1, 28, 28) + bytes(784), "magic number 2051.*expected IDX labels"),
        (read_images, b"\x00\x00\x08", "3 bytes, too short for an IDX header"),
        (read_images, _header(3, 2, 28), "truncated header"),
        (read_images, _header(3, 2, 28, 28) + bytes(1000), r"truncated.*\(2, 28, 28\), 1,568"),
        (read_labels, _header(1, 3) + bytes(5), "longer than declared.*holds 5"),
        (read_images, _header(3, 1, 20, 20) + bytes(400), "20×20 pixels; expected 28×28"),
        (read_labels, _header(1, 3) + bytes([1, 12, 3]), "label 12 at index 1.*0..9"),
    ],
)
def test_bad_idx_files_are_refused_naming_the_file(tmp_path, reader, data, message):
    path = _bad(tmp_path / "some-file-idx-ubyte", data)
    with pytest.raises(ValueError, match=message) as err:
        reader(path)
    assert str(path) in str(err.value)


def test_bad_gzip_count_mismatch_and_missing_files(tmp_path):
    good = gzip.compress(_header(1, 100) + bytes(100))
    path = _bad(tmp_path / "t10k-labels-idx1-ubyte.gz", good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a complete gzip file") as err:
        read_idx(path, 1)
    assert str(path) in str(err.value)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", digits(5)[0])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="holds 5 images but .* holds 4 labels"):
        read_mnist(tmp_path, "t10k")
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        read_mnist(tmp_path, "train")
    with pytest.raises(ValueError, match="data.path must be a folder"):
        MultiMNIST(None)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        MultiMNIST(str(tmp_path / "nowhere")).setup()


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
    images, labels = digits(200)
    # enough composites that every digit of each source is drawn (checked below)
    a = build_splits(images, labels, 1000, 50, 400, test_fraction=0.25, seed=1)
    b = build_splits(images, labels, 1000, 50, 400, test_fraction=0.25, seed=1)
    c = build_splits(images, labels, 1000, 50, 400, test_fraction=0.25, seed=2)
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
    d = build_splits(images, labels, 100, 50, 400, test_fraction=0.25, seed=1)
    assert torch.equal(a["test"].images, d["test"].images)
    with pytest.raises(ValueError, match="leaves 1 digit.* test source"):
        build_splits(images[:10], labels[:10], 5, 5, 5, test_fraction=0.1)


# --- the data module ------------------------------------------------------------------------------


def test_data_module_batches_and_loaders(tmp_path):
    mnist_folder(tmp_path, n=120, gz=True)
    kw = dict(num_train=100, num_val=30, num_test=45, batch_size=32, eval_batch_size=20)
    dm = MultiMNIST(str(tmp_path), **kw)
    dm.setup()
    assert dm.source_note == TEST_SPLIT_NOTE and not dm.cache_hit
    torch.manual_seed(5)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert [len(b["labels"]) for b in batches] == [25, 25, 25, 25]  # near-equal, no runt
    x, y = batches[0]["images"], batches[0]["labels"]
    assert x.shape == (25, 1, 36, 36) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and y.shape == (25, 2) and y.dtype == torch.int64
    order = torch.cat([b["labels"] for b in batches])
    assert not torch.equal(order, dm.splits["train"].labels)  # shuffled
    torch.manual_seed(5)
    again = torch.cat([b["labels"] for b in dm.train_dataloader()])
    assert torch.equal(order, again)  # seed_everything fixes the order
    loader.sampler.set_epoch(1)
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
    train_images, _ = mnist_folder(tmp_path, "train", n=60, seed=1)
    test_images, _ = mnist_folder(tmp_path, "t10k", n=20, seed=2)
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


# --- networks -------------------------------------------------------------------------------------


def test_multi_lenet_shapes_and_parameter_count():
    net = MultiLeNet(seed=0)
    x = torch.rand(3, 1, 36, 36)
    assert net.features(x).shape == (3, 50)
    assert net(x).shape == (3, 2, 10)
    side = ((36 - 9 + 1) // 2 - 5 + 1) // 2  # 36 → 28 → 14 → 10 → 5
    assert side == 5
    expected = (10 * 1 * 9 * 9 + 10) + (20 * 10 * 5 * 5 + 20) + (20 * side**2 * 50 + 50)
    expected += 2 * (50 * 10 + 10)
    assert sum(p.numel() for p in net.parameters()) == expected == 31_910
    # seeded construction is reproducible and leaves the caller's random state alone
    state = torch.get_rng_state()
    twin = MultiLeNet(seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), twin.parameters()))


def test_stacked_lenet_matches_its_members_and_keeps_them_independent():
    stack = StackedMultiLeNet(3, seed=7)
    assert len(stack) == 3 and all(p.shape[0] == 3 for p in stack.parameters())
    x = torch.rand(4, 1, 36, 36)
    out = stack(x)
    assert out.shape == (3, 4, 2, 10)
    members = [stack.member(i) for i in range(3)]
    for i, net in enumerate(members):
        assert torch.allclose(out[i], net(x), atol=1e-5)
        fresh = MultiLeNet(seed=member_seed(7, i))  # initialised as N seeded MultiLeNets
        assert all(torch.equal(p, q) for p, q in zip(net.parameters(), fresh.parameters()))
    assert not torch.equal(members[0].conv1.weight, members[1].conv1.weight)
    # one batch per member
    xs = torch.rand(3, 2, 1, 36, 36)
    assert torch.allclose(stack(xs)[2], members[2](xs[2]), atol=1e-5)
    # member 1's loss reaches only slice 1, and that slice is the plain member's gradient
    y = torch.randint(0, 10, (4, 2))
    F.cross_entropy(out[1].reshape(-1, 10), y.reshape(-1)).backward()
    F.cross_entropy(members[1](x).reshape(-1, 10), y.reshape(-1)).backward()
    plain = dict(members[1].named_parameters())
    for name, p in stack.stacked_parameters().items():
        assert p.grad[0].abs().max() == 0 and p.grad[2].abs().max() == 0
        assert torch.allclose(p.grad[1], plain[name].grad, atol=1e-6)
    assert any(p.grad[1].abs().max() > 0 for p in stack.parameters())
    # stacking given networks keeps their values
    again = StackedMultiLeNet(members)
    assert torch.allclose(again(x), out.detach(), atol=1e-5)


# --- the real test split --------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"{REAL_MNIST} (MNIST test split) absent")
def test_real_mnist_test_split():
    images, labels = read_mnist(REAL_MNIST, "t10k")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # the folder's README
    assert np.bincount(labels, minlength=10).tolist() == counts
    dm = MultiMNIST(str(REAL_MNIST), num_train=3000, num_val=300, num_test=2000, cache=False)
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
