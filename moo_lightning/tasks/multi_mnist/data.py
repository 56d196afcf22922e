"""Multi-MNIST data (Sener & Koltun 2018; Lin et al. 2019): two MNIST digits overlaid on one
36×36 canvas, one 10-way task per digit. Batches: ``{"images": (B, 1, 36, 36) float32 in [0, 1],
"labels": (B, 2) int64}``, labels[:, 0] the top-left digit A, labels[:, 1] the bottom-right B."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from moo_lightning.batches import EpochLoader, IndexBatches, batch_loader, run_seed
from moo_lightning.mnist import DIGIT, find_idx, read_mnist

CANVAS = 36
OFFSET_B = 6  # digit A covers rows/cols 0..27, digit B rows/cols 6..33
SPLITS = ("t10k", "train")
TEST_SPLIT_NOTE = "built from the MNIST test split"
TRAIN_SPLIT_NOTE = "built from the MNIST training split (train/val) and test split (test)"
# Fixed by default so every training seed of a sweep sees the same composites: the run seed
# then varies only the initialisation and the batch order.
COMPOSITION_SEED = 20180
PATH_HINT = (
    "data.path must be a folder holding the MNIST IDX files <split>-images-idx3-ubyte and "
    "<split>-labels-idx1-ubyte, <split> = t10k or train, plain or .gz (also found under "
    "MNIST/raw/, as torchvision lays them out). Offline, the test split alone is enough "
    "(train_split=t10k); with a network, `torchvision.datasets.MNIST(root, download=True)` "
    "writes both splits to root/MNIST/raw (then data.path=root and train_split=train)."
)
# The composites of the last (files, sizes, seed) built by this process: a sweep's later jobs
# (other combiners, other run seeds) reuse them instead of reading and composing again.
_COMPOSED: dict[tuple, tuple] = {}


# --- composition ----------------------------------------------------------------------------------


def compose(
    images: np.ndarray, labels: np.ndarray, pairs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Canvases (n, 36, 36) uint8 and labels (n, 2) int64 for digit pairs (n, 2) of indices:
    digit A = images[pairs[:, 0]] at rows/cols 0–27, B = images[pairs[:, 1]] at 6–33, the
    pixelwise maximum where they overlap (ink over ink stays the brighter stroke)."""
    pairs = np.asarray(pairs)
    canvas = np.zeros((len(pairs), CANVAS, CANVAS), np.uint8)
    canvas[:, :DIGIT, :DIGIT] = images[pairs[:, 0]]
    window = canvas[:, OFFSET_B : OFFSET_B + DIGIT, OFFSET_B : OFFSET_B + DIGIT]
    np.maximum(window, images[pairs[:, 1]], out=window)  # a view: writes into canvas
    return canvas, labels[pairs].astype(np.int64)


def sample_pairs(num_digits: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n ordered pairs (n, 2) of distinct indices in 0..num_digits−1, uniform over all such
    pairs: B is A shifted by 1..num_digits−1 (mod num_digits), so B ≠ A without rejection.
    The two digits' classes may coincide, which keeps the tasks' labels independent."""
    if num_digits < 2:
        raise ValueError(f"pairs of distinct digits need >= 2 digits. Found {num_digits}")
    first = rng.integers(0, num_digits, n)
    second = (first + rng.integers(1, num_digits, n)) % num_digits
    return np.stack([first, second], axis=1)


def split_sources(
    num_digits: int, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted index sets (train source, test source) of the digits; the test source
    holds round(test_fraction · num_digits) of them."""
    num_test = round(test_fraction * num_digits)
    perm = rng.permutation(num_digits)
    return np.sort(perm[num_test:]), np.sort(perm[:num_test])


@dataclass(frozen=True, eq=False)  # eq: tensors do not compare to one bool
class Composites(Dataset):
    """Composite images (n, 36, 36) uint8, labels (n, 2) int64 and, for provenance, digits
    (n, 2): the indices of digits A and B in the IDX file they were read from. Indexing with an
    int or a list of ints returns ``{"images": (…, 1, 36, 36) float32 in [0, 1], "labels"}``."""

    images: torch.Tensor
    labels: torch.Tensor
    digits: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx):
        # stored as uint8 (a quarter of float32's memory); converted one batch at a time
        x = self.images[idx].unsqueeze(-3).to(torch.float32).div_(255.0)
        return {"images": x, "labels": self.labels[idx]}


def build_splits(
    images: np.ndarray,
    labels: np.ndarray,
    num_train: int,
    val_size: int,
    num_test: int,
    test_fraction: float = 0.2,
    split_seed: int = COMPOSITION_SEED,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
) -> dict[str, Composites]:
    """Train / val / test composites. Without ``test_images`` the digits are first split (with
    ``split_seed``) into disjoint train and test sources; with them (the official MNIST splits) the
    given arrays are the two sources. Composites pair digits of one source only, so no digit is
    in both a training and a test image; val is carved from the training composites (its digits
    are training digits, its pairs fresh draws)."""
    # independent streams: the split, the training and the test composites; so num_test does
    # not change the training images, nor num_train the test images
    split_rng, train_rng, test_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(split_seed).spawn(3)
    )
    if test_images is None:
        train_src, test_src = split_sources(len(images), test_fraction, split_rng)
        test_images, test_labels = images, labels
        where = f"test_fraction={test_fraction} of {len(images):,} digits"
    else:
        train_src, test_src = np.arange(len(images)), np.arange(len(test_images))
        where = "the given files"
    out = {}
    for name, src, pool, pool_labels, n, rng in (
        ("train", train_src, images, labels, num_train + val_size, train_rng),
        ("test", test_src, test_images, test_labels, num_test, test_rng),
    ):
        if len(src) < 2:
            raise ValueError(
                f"{where} leaves {len(src)} digit(s) in the {name} source; composites of two "
                f"distinct digits need >= 2"
            )
        digits = src[sample_pairs(len(src), n, rng)]
        canvas, pair_labels = compose(pool, pool_labels, digits)
        out[name] = Composites(torch.from_numpy(canvas), torch.from_numpy(pair_labels), digits)
    train = out["train"]
    out["train"], out["val"] = (
        Composites(train.images[a:b], train.labels[a:b], train.digits[a:b])
        for a, b in ((0, num_train), (num_train, num_train + val_size))
    )
    return {k: out[k] for k in ("train", "val", "test")}


# --- loaders --------------------------------------------------------------------------------------


class MultiMNIST(L.LightningDataModule):
    """Multi-MNIST composites from MNIST IDX files (Sener & Koltun 2018; Lin et al. 2019).

    path: folder with the IDX files (required; nothing is downloaded). train_split='t10k': the
    10,000 test digits are split with ``split_seed`` into disjoint train / test sources
    (``test_fraction`` to test) and ``source_note`` records that results are "built from the
    MNIST test split"; train_split='train': the training file is the train source and the test
    file the test source (``test_fraction`` unused). num_train / val_size / num_test composites
    (val carved from training composites); split_seed fixes the composition, so it is the same
    for every run seed (the run seed varies the initialisation and the batch order). Batches:
    images (B, 1, 36, 36) float32 in [0, 1], labels (B, 2) int64.

    Default sizes (for the offline stand-in, 8,000 train-source and 2,000 test-source digits):
    20,000 training composites use each source digit 5 times (2.5 as A, 2.5 as B) in pairs that
    are almost all distinct (8,000 · 7,999 ordered pairs), which covers both positions of every
    digit; more would mostly re-pair the same 8,000 digit shapes while slowing every epoch of a
    CPU sweep. 2,000 validation composites give a standard error of about 0.7 points at 90%
    accuracy, enough to pick checkpoints; 10,000 test
    composites show each test digit about 5 times in each position (evaluation is forward
    only, so the extra pairings cost little and average out the pairing noise)."""

    def __init__(
        self,
        path: str | None = None,
        num_train: int = 20_000,
        val_size: int = 2_000,
        num_test: int = 10_000,
        test_fraction: float = 0.2,
        batch_size: int = 256,
        eval_batch_size: int = 1_000,
        split_seed: int = COMPOSITION_SEED,
        train_split: str = "t10k",
        cache: bool = True,
    ):
        super().__init__()
        if path is None:
            raise ValueError(PATH_HINT)
        for key, value, low in (
            ("num_train", num_train, 1),
            ("val_size", val_size, 1),
            ("num_test", num_test, 1),
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("split_seed", split_seed, 0),  # numpy seeds are non-negative
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"data.{key} must be an integer >= {low}. Found {value!r}")
        if isinstance(test_fraction, bool) or not (
            isinstance(test_fraction, int | float) and 0 < test_fraction < 1
        ):
            raise ValueError(f"data.test_fraction must be in (0, 1). Found {test_fraction!r}")
        if train_split not in SPLITS:
            raise ValueError(
                f"data.train_split must be one of {', '.join(SPLITS)}. Found {train_split!r}"
            )
        if not isinstance(cache, bool):
            raise ValueError(f"data.cache must be true or false. Found {cache!r}")
        self.path = str(path)
        self.num_train, self.val_size, self.num_test = num_train, val_size, num_test
        self.test_fraction = float(test_fraction)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.split_seed, self.train_split, self.cache = split_seed, train_split, cache
        self.source_note = TEST_SPLIT_NOTE if train_split == "t10k" else TRAIN_SPLIT_NOTE
        self.splits: dict[str, Composites] | None = None
        self.cache_hit = False

    def module_arguments(self) -> dict:
        return {"source_note": self.source_note}  # every result says what its digits were

    def _files(self) -> list[Path]:
        folder = Path(self.path)
        if not folder.is_dir():
            raise FileNotFoundError(f"data.path {self.path!r} is not a folder. {PATH_HINT}")
        splits = ("t10k",) if self.train_split == "t10k" else ("train", "t10k")
        return [
            find_idx(folder, s, kind, PATH_HINT) for s in splits for kind in ("images", "labels")
        ]

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        files = self._files()
        stamp = tuple((str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        key = (
            stamp,
            self.train_split,
            self.test_fraction,
            self.split_seed,
            self.num_train,
            self.val_size,
            self.num_test,
        )
        if self.cache and key in _COMPOSED:
            self.splits = _COMPOSED[key]
            self.cache_hit = True
            return
        extra = {}
        if self.train_split == "train":
            images, labels = read_mnist(self.path, "train", PATH_HINT)
            extra = dict(
                zip(("test_images", "test_labels"), read_mnist(self.path, "t10k", PATH_HINT))
            )
        else:
            images, labels = read_mnist(self.path, "t10k", PATH_HINT)
        self.splits = build_splits(
            images,
            labels,
            self.num_train,
            self.val_size,
            self.num_test,
            self.test_fraction,
            self.split_seed,
            **extra,
        )
        if self.cache:
            _COMPOSED.clear()  # one entry: a sweep shares one composition
            _COMPOSED[key] = self.splits

    def _ranks(self) -> tuple[int, int]:
        """(rank, world size) of the attached trainer; the loaders shard themselves (the
        trainer presets set use_distributed_sampler=false)."""
        trainer = getattr(self, "trainer", None)
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def train_dataloader(self):
        # the batch order follows the run's seed (batches.run_seed), the same on every rank
        # whatever drew from the global random state before the loader was built
        seed = run_seed()
        rank, world = self._ranks()
        batches = IndexBatches(len(self.splits["train"]), self.batch_size, seed, rank, world)
        return EpochLoader(self.splits["train"], batches, batches=False, trainer=self.trainer)

    def _eval_loader(self, split: str):
        rank, world = self._ranks()
        batches = IndexBatches(len(self.splits[split]), self.eval_batch_size, None, rank, world)
        return batch_loader(self.splits[split], batches)

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")
