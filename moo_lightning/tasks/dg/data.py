"""Leave-one-domain-out data with JiGen puzzles.

Training batches: ``{"images": (B, C, S, S) float32 (normalised; a fraction 1 − β of them with
their 3×3 tiles shuffled), "labels": (B,) int64 object classes, "jigsaw": (B,) int64 — 0 for an
ordered image, k ∈ 1..P for permutation k}``. Validation (a held-out share of the *source*
domains) and test (the whole *target* domain) batches hold ordered images only (jigsaw 0).

Sources: :class:`PACS` (a user's folder: 4 domain folders × 7 class folders, the official
``<domain>_train_kfold.txt`` / ``<domain>_crossval_kfold.txt`` lists when present) and
:class:`RotatedMNIST`, the offline stand-in (DomainBed's domains 0°, 15°, …, 75°, each from its
own disjoint digits of an MNIST IDX file)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from moo_lightning.batches import EpochLoader, IndexBatches, batch_loader, run_seed
from moo_lightning.mnist import find_idx, read_mnist
from moo_lightning.tasks.dg.jigsaw import (
    GRID,
    draw_jigsaw_labels,
    hamming_permutations,
    permutation_table,
    shuffle_tiles,
)

RMNIST_DOMAINS = (0, 15, 30, 45, 60, 75)
RMNIST_NOTE = (
    "Rotated-MNIST stand-in (built from the 10,000-digit MNIST test split), not PACS: "
    "a stand-in for the PNG paper's Table 2"
)
PACS_DOMAINS = ("art_painting", "cartoon", "photo", "sketch")
PACS_NOTE = "PACS (from data.path)"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# the images of the last (source, settings) read by this process: a sweep's later jobs reuse them
_LOADED: dict[tuple, dict] = {}


@dataclass(frozen=True, eq=False)
class DomainImages:
    """Images (n, C, S, S) uint8, object labels (n,) int64, domain index (n,) int64 and, for
    provenance, where each image came from (n,) (a file index or a path)."""

    images: torch.Tensor
    labels: torch.Tensor
    domains: torch.Tensor
    source: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> DomainImages:
        idx = np.asarray(idx, dtype=np.int64)
        t = torch.from_numpy(idx)
        return DomainImages(self.images[t], self.labels[t], self.domains[t], self.source[idx])

    @staticmethod
    def concat(parts: list[DomainImages]) -> DomainImages:
        return DomainImages(
            torch.cat([p.images for p in parts]),
            torch.cat([p.labels for p in parts]),
            torch.cat([p.domains for p in parts]),
            np.concatenate([p.source for p in parts]),
        )


class EpochBatches(IndexBatches):
    """The shared sampler's batches, each yielded as (epoch, indices): the dataset draws every
    image's jigsaw label from (seed, epoch)."""

    def __iter__(self):
        for batch in super().__iter__():
            yield self.epoch, batch


class JigsawSet(Dataset):
    """Indexed by (epoch, indices): a batch dict. ``seed`` None: ordered images (evaluation);
    otherwise each epoch draws every image's jigsaw label from (seed, epoch) — ordered with
    probability ``ordered_fraction``, else one of the P permutations — and shuffles its tiles."""

    def __init__(
        self,
        data: DomainImages,
        table: torch.Tensor,
        mean,
        std,
        ordered_fraction: float = 1.0,
        seed: int | None = None,
    ):
        self.data, self.table = data, table
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.ordered_fraction, self.seed = ordered_fraction, seed
        self._epoch_labels: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.data)

    def jigsaw_labels(self, epoch: int) -> torch.Tensor:
        """Every image's jigsaw label (n,) in this epoch."""
        if self.seed is None:
            return torch.zeros(len(self.data), dtype=torch.long)
        if self._epoch_labels is None or self._epoch_labels[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 1])
            labels = draw_jigsaw_labels(
                len(self.data), len(self.table) - 1, self.ordered_fraction, rng
            )
            self._epoch_labels = (epoch, torch.from_numpy(labels))
        return self._epoch_labels[1]

    def __getitem__(self, item):
        epoch, idx = item
        t = torch.as_tensor(idx, dtype=torch.long)
        x = self.data.images[t].to(torch.float32).div_(255.0)
        jig = self.jigsaw_labels(epoch)[t]
        if bool((jig > 0).any()):
            x = shuffle_tiles(x, self.table[jig], GRID)
        x = (x - self.mean) / self.std
        return {"images": x, "labels": self.data.labels[t], "jigsaw": jig}


def _check_fraction(key, value) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and 0 < value <= 1):
        raise ValueError(f"data.{key} must be a fraction in (0, 1]. Found {value!r}")
    return float(value)


def _check_val_size(value) -> float | int:
    """A fraction of each source domain (a float in (0, 1)) or a number of its images (an
    integer >= 1), as scikit-learn's ``test_size``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, float) and math.isfinite(value) and 0 < value < 1:
        return value
    raise ValueError(
        "data.val_size must be a fraction of each source domain in (0, 1) or a number of its "
        f"images (an integer >= 1). Found {value!r}"
    )


def _check_int(key, value, low=1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"data.{key} must be an integer >= {low}. Found {value!r}")
    return value


class JigsawData(L.LightningDataModule):
    """The protocol shared by every source: leave ``target`` out, validate on ``val_size`` of
    each source domain (a fraction in (0, 1), or a number of images; model selection, never the
    target), test on the whole target domain. Training images carry JiGen puzzles from
    ``num_permutations`` permutations with ``ordered_fraction`` of them whole. ``split_seed``
    fixes what stays the same in every trial: the validation split and the permutation set
    (saved with the run as permutations.json). Subclasses load ``self.domain_names`` and one
    :class:`DomainImages` per domain with its train / val split (``_load``)."""

    source_note = ""
    mean: tuple = (0.5,)
    std: tuple = (0.5,)

    def __init__(
        self,
        target,
        num_permutations: int = 30,
        ordered_fraction: float = 0.9,
        val_size: float | int = 0.1,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        split_seed: int = 0,
        cache: bool = True,
    ):
        super().__init__()
        self.target = target
        self.num_permutations = _check_int("num_permutations", num_permutations)
        self.ordered_fraction = _check_fraction("ordered_fraction", ordered_fraction)
        self.val_size = _check_val_size(val_size)
        self.batch_size = _check_int("batch_size", batch_size)
        self.eval_batch_size = _check_int("eval_batch_size", eval_batch_size)
        self.split_seed = _check_int("split_seed", split_seed, 0)
        self.cache = bool(cache)
        self.permutations = hamming_permutations(self.num_permutations, GRID, self.split_seed)
        self.table = permutation_table(self.permutations)
        self.splits: dict[str, DomainImages] | None = None
        self.domain_names: list[str] = []
        self.class_names: list[str] = []
        self.official_splits = False
        self.cache_hit = False

    # --- what subclasses provide ------------------------------------------------------------

    def _load(self) -> tuple[list[str], list[str], list[tuple[DomainImages, np.ndarray | None]]]:
        """(domain names, class names, per domain: its images and, when the source fixes one,
        the indices of its validation images (None: a seeded split of ``val_size``))."""
        raise NotImplementedError

    def _cache_key(self) -> tuple:
        raise NotImplementedError

    def target_name(self) -> str:
        return str(self.target)

    # --- the protocol -----------------------------------------------------------------------

    def module_arguments(self) -> dict:
        self.setup("fit")
        return {
            "num_classes": len(self.class_names),
            "num_permutations": self.num_permutations,
            "in_channels": int(self.splits["train"].images.shape[1]),
            "permutations": self.permutations.tolist(),
            "permutation_seed": self.split_seed,
            "source_note": self.source_note,
            "target": self.target_name(),
            "domains": list(self.domain_names),
        }

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        key = self._cache_key()
        if self.cache and key in _LOADED:
            loaded = _LOADED[key]
            self.cache_hit = True
        else:
            loaded = self._load()
            if self.cache:
                _LOADED.clear()
                _LOADED[key] = loaded
        self.domain_names, self.class_names, per_domain = loaded
        self.official_splits = all(v is not None for _, v in per_domain)
        target = self.target_name()
        if target not in self.domain_names:
            raise ValueError(
                f"data.target={self.target!r} is not a domain here; the domains are "
                f"{', '.join(self.domain_names)}"
            )
        train, val, test = [], [], []
        rng = np.random.default_rng([self.split_seed, 7])
        for name, (images, fixed_val) in zip(self.domain_names, per_domain):
            if name == target:
                test.append(images)
                continue
            if fixed_val is None:
                perm = rng.permutation(len(images))
                n_val = self._num_val(len(images))
                if n_val >= len(images):
                    raise ValueError(
                        f"data.val_size={self.val_size!r} leaves no training image in domain "
                        f"{name} ({len(images)} images): give a fraction in (0, 1) or fewer images"
                    )
                fixed_val = np.sort(perm[:n_val])
            is_val = np.zeros(len(images), bool)
            is_val[fixed_val] = True
            train.append(images.subset(np.flatnonzero(~is_val)))
            val.append(images.subset(np.flatnonzero(is_val)))
        self.splits = {
            "train": DomainImages.concat(train),
            "val": DomainImages.concat(val),
            "test": DomainImages.concat(test),
        }
        for split, part in self.splits.items():
            if len(part) == 0:
                raise ValueError(f"the {split} split is empty (target {target})")

    def _num_val(self, n: int) -> int:
        """Validation images of a source domain of ``n`` images (at least one)."""
        if isinstance(self.val_size, float):
            return max(1, round(self.val_size * n))
        return self.val_size

    def describe_val_size(self) -> str:
        if isinstance(self.val_size, float):
            return f"{self.val_size:.0%}"
        return f"{self.val_size} images"

    def _ranks(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def train_set(self, seed: int) -> JigsawSet:
        return JigsawSet(
            self.splits["train"], self.table, self.mean, self.std, self.ordered_fraction, seed
        )

    def train_dataloader(self):
        # the batch order and the puzzles follow the run's seed (batches.run_seed), the same on
        # every rank: a draw from the global random state here would come after the model's
        # initialisation in one process but after DDP's reseeding on N ranks
        seed = run_seed()
        rank, world = self._ranks()
        batches = EpochBatches(len(self.splits["train"]), self.batch_size, seed, rank, world)
        return EpochLoader(self.train_set(seed), batches, batches=False, trainer=self.trainer)

    def _eval_loader(self, split: str):
        rank, world = self._ranks()
        data = self.splits[split]
        batches = EpochBatches(len(data), self.eval_batch_size, None, rank, world)
        dataset = JigsawSet(data, self.table, self.mean, self.std)
        return batch_loader(dataset, batches)

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")


# --- Rotated MNIST (the offline stand-in) ---------------------------------------------------------


MNIST_HINT = (
    "data.path must be a folder with the MNIST IDX files <split>-images-idx3-ubyte and "
    "<split>-labels-idx1-ubyte (plain or .gz; also found under MNIST/raw/); the t10k split "
    "alone is enough"
)


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Images (n, 1, H, W) float rotated counter-clockwise by ``degrees`` about their centre
    (bilinear, zeros outside)."""
    if degrees == 0:
        return images.clone()
    a = math.radians(degrees)
    theta = torch.tensor(
        [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=images.dtype
    )
    grid = F.affine_grid(theta.expand(len(images), 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """28×28 digits as size×size: zero-padded when the difference is even (30: tiles of 10
    with the digit untouched), resized otherwise."""
    h = images.shape[-1]
    if size == h:
        return images
    if size > h and (size - h) % 2 == 0:
        p = (size - h) // 2
        return F.pad(images, (p, p, p, p))
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)


class RotatedMNIST(JigsawData):
    """Rotated MNIST (Ghifary et al. 2015; DomainBed's angles) from an MNIST IDX folder, the
    offline stand-in for PACS: the digits of ``split`` are permuted with ``split_seed`` and cut
    into one disjoint set of ``per_domain`` digits per angle (None: all digits, equally
    shared), each rotated by its angle and brought to ``image_size`` (a multiple of 3).
    ``target``: the held-out angle. Every record says it is a stand-in (``source_note``)."""

    source_note = RMNIST_NOTE

    def __init__(
        self,
        path: str | None = None,
        target: int = 0,
        domains=RMNIST_DOMAINS,
        per_domain: int | None = None,
        image_size: int = 30,
        split: str = "t10k",
        **kwargs,
    ):
        if path is None:
            raise ValueError(
                "data.path must be a folder with MNIST IDX files (<split>-images-idx3-ubyte, "
                "<split>-labels-idx1-ubyte), or set MNIST_DIR to one"
            )
        super().__init__(target=target, **kwargs)
        self.path = str(path)
        self.angles = [int(a) for a in domains]
        if len(set(self.angles)) != len(self.angles) or len(self.angles) < 2:
            raise ValueError(f"data.domains: >= 2 distinct angles. Found {list(domains)}")
        self.per_domain = None if per_domain is None else _check_int("per_domain", per_domain)
        self.image_size = _check_int("image_size", image_size, GRID)
        if self.image_size % GRID:
            raise ValueError(f"data.image_size must be a multiple of 3. Found {image_size}")
        self.split = split

    def target_name(self) -> str:
        return str(int(self.target)) if str(self.target).lstrip("-").isdigit() else str(self.target)

    def _cache_key(self) -> tuple:
        files = [find_idx(self.path, self.split, kind, MNIST_HINT) for kind in ("images", "labels")]
        stamp = tuple((str(f.resolve()), f.stat().st_mtime_ns) for f in files)
        return ("rmnist", stamp, tuple(self.angles), self.per_domain, self.image_size,
                self.split_seed, self.val_size)  # fmt: skip

    def _load(self):
        if not Path(self.path).is_dir():
            raise FileNotFoundError(f"data.path {self.path!r} is not a folder")
        images, labels = read_mnist(self.path, self.split, MNIST_HINT)
        k = len(self.angles)
        per = self.per_domain or len(images) // k
        if per * k > len(images):
            raise ValueError(
                f"data.per_domain={per} × {k} domains needs {per * k:,} digits; "
                f"the {self.split} split in {self.path} holds {len(images):,}"
            )
        order = np.random.default_rng([self.split_seed, 6]).permutation(len(images))
        per_domain = []
        for d, angle in enumerate(self.angles):
            idx = np.sort(order[d * per : (d + 1) * per])
            x = torch.from_numpy(images[idx]).unsqueeze(1).float()
            x = to_size(rotate(x, angle), self.image_size).round().clamp(0, 255)
            per_domain.append(
                (
                    DomainImages(
                        x.to(torch.uint8),
                        torch.from_numpy(labels[idx].astype(np.int64)),
                        torch.full((per,), d, dtype=torch.long),
                        idx,
                    ),
                    None,
                )
            )
        return [str(a) for a in self.angles], [str(c) for c in range(10)], per_domain


# --- PACS (a user's folder) ---------------------------------------------------------------------


def _split_list(root: Path, domain: str, which: str) -> Path | None:
    for where in (root, root / "splits", root / "pacs_label", root / "kfold"):
        f = where / f"{domain}_{which}_kfold.txt"
        if f.is_file():
            return f
    return None


def _read_list(path: Path) -> list[str]:
    """Relative image paths of an official PACS list (``<domain>/<class>/<file> <label>``)."""
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            out.append(parts[0].replace("\\", "/").removeprefix("kfold/").removeprefix("./"))
    return out


def load_image(path: Path, size: int) -> np.ndarray:
    """An image file as (3, size, size) uint8 RGB (bilinear resize)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


class PACS(JigsawData):
    """PACS (Li et al. 2017) from ``path``: one folder per domain (art_painting, cartoon, photo,
    sketch, or whatever folders are there), one folder per class inside each, image files in
    those. Validation images: the official ``<domain>_crossval_kfold.txt`` list of each
    source domain when ``<domain>_train_kfold.txt`` and it are found (in path, path/splits,
    path/pacs_label or path/kfold; their paths are relative to ``path``), otherwise a seeded
    ``val_size`` of it. The target domain is tested whole (every image in its folder),
    as JiGen does. Images are read once, resized to ``image_size`` (222 in JiGen), and kept
    as uint8 (PACS at 222: about 1.5 GB). ImageNet normalisation; no augmentation."""

    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(
        self, path: str | None = None, target: str = "sketch", image_size: int = 222, **kwargs
    ):
        if path is None:
            raise ValueError(
                "data.path must be the PACS folder (one folder per domain: art_painting, "
                "cartoon, photo, sketch; one folder per class inside each)"
            )
        super().__init__(target=target, **kwargs)
        self.path = str(path)
        self.image_size = _check_int("image_size", image_size, GRID)
        if self.image_size % GRID:
            raise ValueError(f"data.image_size must be a multiple of 3. Found {image_size}")

    @property
    def source_note(self) -> str:
        if self.splits is None:
            return PACS_NOTE
        how = (
            "the official crossval lists"
            if self.official_splits
            else f"a seeded {self.describe_val_size()} of each source domain"
        )
        return f"{PACS_NOTE}; validation: {how}"

    def _layout(self) -> tuple[list[str], list[str]]:
        root = Path(self.path)
        if not root.is_dir():
            raise FileNotFoundError(f"data.path {self.path!r} is not a folder")
        domains = sorted(
            d.name for d in root.iterdir() if d.is_dir() and any(c.is_dir() for c in d.iterdir())
        )
        if len(domains) < 2:
            raise ValueError(
                f"{root}: found {len(domains)} domain folder(s) with class folders; PACS has 4 "
                f"({', '.join(PACS_DOMAINS)}), each with one folder per class"
            )
        classes = sorted({c.name for d in domains for c in (root / d).iterdir() if c.is_dir()})
        return domains, classes

    def _cache_key(self) -> tuple:
        root = Path(self.path).resolve()
        return ("pacs", str(root), root.stat().st_mtime_ns if root.exists() else 0,
                self.image_size, self.split_seed, self.val_size)  # fmt: skip

    def _load(self):
        root = Path(self.path)
        domains, classes = self._layout()
        cls_index = {c: i for i, c in enumerate(classes)}
        per_domain = []
        for d, domain in enumerate(domains):
            files = sorted(
                p.relative_to(root).as_posix()
                for p in (root / domain).glob("*/*")
                if p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                raise ValueError(f"{root / domain}: no image files in its class folders")
            val_idx = None
            train_list, val_list = (_split_list(root, domain, w) for w in ("train", "crossval"))
            if train_list and val_list:
                position = {f: i for i, f in enumerate(files)}
                val_idx = []
                for rel in _read_list(val_list):
                    if rel not in position:
                        raise FileNotFoundError(f"{val_list}: lists {rel}, not under {root}")
                    val_idx.append(position[rel])
                val_idx = np.array(sorted(val_idx), dtype=np.int64)
            images = np.stack([load_image(root / f, self.image_size) for f in files])
            labels = [cls_index[f.split("/")[1]] for f in files]
            per_domain.append(
                (
                    DomainImages(
                        torch.from_numpy(images),
                        torch.tensor(labels, dtype=torch.long),
                        torch.full((len(files),), d, dtype=torch.long),
                        np.array(files),
                    ),
                    val_idx,
                )
            )
        return domains, classes, per_domain
