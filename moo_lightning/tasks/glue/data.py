"""GLUE few-shot data (the seed paper's protocol): train on N sampled examples, validate on 500
examples and test on a fixed half of the official validation split; batches hold ≥ 2 examples
per class."""

from __future__ import annotations

import contextlib
import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader

from moo_lightning.batches import EpochLoader


@dataclass(frozen=True)
class GlueTask:
    text_fields: tuple[str, ...]  # Hugging Face glue schema
    label_names: tuple[str, ...]
    validation: str  # the validation split used
    tsv_fields: tuple[str, ...]  # classic GLUE TSV columns (texts..., label)
    tsv_validation: str

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


TASKS = {
    "sst2": GlueTask(
        ("sentence",), ("negative", "positive"), "validation", ("sentence", "label"), "dev.tsv"
    ),
    "qnli": GlueTask(
        ("question", "sentence"),
        ("entailment", "not_entailment"),
        "validation",
        ("question", "sentence", "label"),
        "dev.tsv",
    ),
    "mnli": GlueTask(
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        "validation_matched",
        ("sentence1", "sentence2", "gold_label"),
        "dev_matched.tsv",
    ),
}
SPLIT_SEED = 20240501  # fixes the test/validation halves, identical for every run seed
# The labelled training pool and the tokenised validation / test halves of the last (task, files,
# tokenizer, lengths) prepared by this process: identical for every seed of a sweep, so later jobs
# of an in-process sweep skip reading, label-checking and tokenising them.
_PREPARED: dict[tuple, tuple] = {}


def _task(name: str) -> GlueTask:
    if name not in TASKS:
        raise ValueError(
            f"data.task must be one of {', '.join(TASKS)} (task={'|'.join(TASKS)}). Found {name!r}"
        )
    return TASKS[name]


def _read_tsv(path: Path, task: GlueTask) -> dict[str, list]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            rows = list(reader)
    except UnicodeDecodeError as err:
        bad = err.object[err.start : err.start + 1]
        raise ValueError(f"{path}: not UTF-8 text (byte {bad!r} at offset {err.start})") from None
    missing = [c for c in task.tsv_fields if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: expected TSV columns {list(task.tsv_fields)}; missing {missing}")
    for i, row in enumerate(rows):  # csv pads short rows with None and keeps extras under None
        if None in row or any(v is None for v in row.values()):
            count = sum(v is not None for k, v in row.items() if k is not None)
            count += len(row.get(None) or [])
            raise ValueError(
                f"{path}, row {i + 1}: {count} fields "
                f"where the header has {len(reader.fieldnames or [])} (a tab inside a text?)"
            )
    *texts, label = task.tsv_fields
    out = {hf: [r[c] for r in rows] for hf, c in zip(task.text_fields, texts)}
    out["label"] = [r[label] for r in rows]
    return out


def _path_hint(task: GlueTask) -> str:
    """What ``data.path`` must be for ``task``: the two layouts :func:`load_splits` reads."""
    columns = ", ".join((*task.text_fields, "label"))
    return (
        f"data.path must be a folder holding train.* and {task.validation}.* (jsonl, json, "
        f"parquet or csv, with the Hugging Face glue columns {columns}) or the GLUE TSVs "
        f"train.tsv and {task.tsv_validation}; without data.path the data come from the hub"
    )


def _data_folder(path: str, task: GlueTask) -> Path:
    """``data.path`` as a folder; a missing path or a file is one line naming it and what the
    folder must hold."""
    folder = Path(path)
    if folder.is_dir():
        return folder
    what = f" (a file; the folder holding it is {folder.parent})" if folder.exists() else ""
    raise FileNotFoundError(f"data.path {path!r} is not a folder{what}. {_path_hint(task)}")


def _find_split(folder: Path, split: str) -> Path | None:
    for ext in ("jsonl", "json", "parquet", "csv"):
        if (folder / f"{split}.{ext}").is_file():
            return folder / f"{split}.{ext}"
    return None


def _read_table(file: Path):
    """One split file (jsonl/json/parquet/csv) as a datasets.Dataset; an empty file, or one the
    reader cannot parse, is one line naming the file."""
    import datasets

    if file.stat().st_size == 0:
        raise ValueError(f"{file}: the file is empty (no rows)")
    kind = {"jsonl": "json"}.get(file.suffix[1:], file.suffix[1:])
    import pyarrow as pa
    from datasets.exceptions import DatasetGenerationError

    try:
        ds = datasets.load_dataset(
            kind, data_files={"split": str(file)}, cache_dir=_content_cache(file)
        )["split"]
    except (DatasetGenerationError, pa.ArrowInvalid, ValueError, UnicodeDecodeError) as err:
        cause = err.__cause__ or err
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ValueError(f"{file}: not readable as {file.suffix[1:]} ({first[:200]})") from None
    if len(ds) == 0:
        raise ValueError(f"{file}: no rows")
    return ds


def _content_cache(file: Path) -> str:
    """The datasets cache folder for this file's content: the library recognises a file by its
    path and modification time, so a file edited in place with its time stamp kept (cp -p,
    rsync -t, a same-length fix) would be read as its old rows, in later processes too."""
    import hashlib

    import datasets

    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    root = Path(datasets.config.HF_DATASETS_CACHE) / "moo_lightning_by_content"
    return str(root / digest.hexdigest()[:24])


def load_splits(task_name: str, path: str | None):
    """(train, validation) as datasets.Dataset in the glue schema, from the hub or a folder."""
    import datasets

    task = _task(task_name)
    if path is None:
        from moo_lightning.hub import HubUnreachableError, hub_reachable

        if not hub_reachable():
            raise HubUnreachableError(
                f"cannot reach the Hugging Face hub to fetch GLUE {task_name}: give a local "
                f"copy with data.path=/path/to/glue/{task_name} (a folder in the glue schema or "
                "the GLUE TSVs)"
            )
        ds = datasets.load_dataset("nyu-mll/glue", task_name)
        return ds["train"], ds[task.validation]
    folder = _data_folder(path, task)
    train, val = _find_split(folder, "train"), _find_split(folder, task.validation)
    _refuse_two_layouts(folder, task, train, val)
    if train and val:
        # each file read by the builder of its own format (train.jsonl + validation.csv works)
        splits = tuple(_read_table(f) for f in (train, val))
        names = train.name, val.name
    elif (folder / "train.tsv").is_file() and (folder / task.tsv_validation).is_file():
        splits = tuple(
            datasets.Dataset.from_dict(_read_tsv(folder / name, task))
            for name in ("train.tsv", task.tsv_validation)
        )
        names = "train.tsv", task.tsv_validation
    else:
        raise FileNotFoundError(
            f"data.path {path!r} holds neither train.* and {task.validation}.* "
            f"(jsonl/json/parquet/csv, glue schema) nor train.tsv and {task.tsv_validation}"
        )
    return tuple(_normalise_labels(s, task, folder, n) for s, n in zip(splits, names))


def _refuse_two_layouts(folder: Path, task: GlueTask, train, val) -> None:
    """A folder holding both layouts (the glue-schema files and the GLUE TSVs) is ambiguous:
    which pair is meant cannot be known, so neither is picked silently."""
    tsvs = [folder / "train.tsv", folder / task.tsv_validation]
    if train and val and all(f.is_file() for f in tsvs):
        raise ValueError(
            f"data.path {str(folder)!r} holds two copies of the data: {train.name} + {val.name} "
            f"and {tsvs[0].name} + {tsvs[1].name}; keep one pair in the folder (move the other "
            "away), so that it is clear which one is read"
        )


def _normalise_labels(ds, task: GlueTask, folder: Path, filename: str):
    missing = [c for c in (*task.text_fields, "label") if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"data.path {str(folder)!r}: expected columns {[*task.text_fields, 'label']}; "
            f"missing {missing}"
        )
    # a folder of another task (QNLI's question + sentence read as SST-2, say) is refused
    others = {f for t in TASKS.values() for f in t.text_fields} - set(task.text_fields)
    foreign = sorted(others & set(ds.column_names))
    if foreign:
        raise ValueError(
            f"data.path {str(folder)!r}: {filename} has the text columns {foreign} of another "
            f"task; this task reads {list(task.text_fields)}"
        )
    for field in task.text_fields:  # every text a non-empty string
        for i, text in enumerate(ds[field]):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    f"{folder / filename}, row {i + 1}: {field} must be a non-empty text. "
                    f"Found {text!r}"
                )
    names = {n: i for i, n in enumerate(task.label_names)}

    allowed = f"0..{task.num_labels - 1} or one of {list(task.label_names)}"

    def to_id(v, row: int):
        """Label ids, names, integer-valued floats (1.0) and booleans are accepted; anything
        else is refused naming the file's row (1-based, data rows)."""
        where = f"{folder / filename}, row {row + 1}"
        if isinstance(v, str):
            text = v.strip()
            if text in names:
                return names[text]
            try:
                v = float(text)
            except ValueError:
                raise ValueError(f"{where}: label {v!r} is not {allowed}") from None
        if isinstance(v, bool):
            v = int(v)
        if not isinstance(v, int | float) or not math.isfinite(v) or float(v) != int(v):
            raise ValueError(f"{where}: label {v!r} is not {allowed}")
        v = int(v)
        if not 0 <= v < task.num_labels:
            raise ValueError(f"{where}: label {v} is not {allowed}")
        return v

    from datasets import Value

    mapped = ds.map(
        lambda b, idx: {"label": [to_id(v, i) for v, i in zip(b["label"], idx)]},
        batched=True,
        with_indices=True,
    )
    # the ids as int64 whatever the file held: a float or boolean column keeps its type through
    # map, and cross-entropy needs integer targets
    return mapped.cast_column("label", Value("int64"))


@contextlib.contextmanager
def _quiet_preparation():
    """Reading, sampling and tokenising a few hundred rows takes a second: the datasets
    library's per-call progress bars ("Map", "Flattening the indices") and a deprecation
    warning pyarrow raises inside it say nothing about the run. Off while the data are
    prepared, as they were before afterwards."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*null_placement.*", category=FutureWarning)
            yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


def _check_max_length(max_length: int, max_tokens: int | None) -> None:
    """Inputs longer than the encoder's positions fail inside its embedding layer mid-training
    (``index 514 is out of bounds``): refused here, with the largest value that works."""
    if max_tokens is not None and max_length > max_tokens:
        raise ValueError(
            f"data.max_length={max_length} exceeds the encoder's {max_tokens} positions (its "
            f"longest input, special tokens included); use data.max_length <= {max_tokens}"
        )


def _check_halves(rows: int, path: str | None, task: GlueTask) -> None:
    """The validation file is split into a test half and a validation half: each needs a row,
    or the run has no test result (or no validation) while saying "ok"."""
    if rows < 2:
        where = f"data.path {path!r}" if path else "the hub's copy"
        raise ValueError(
            f"{where}: the {task.validation} file holds {rows} row(s); it is split into a "
            "validation half and a test half, which need >= 1 row each (>= 2 rows)"
        )


def few_shot_indices(labels: np.ndarray, n: int, num_labels: int, seed: int, balanced: bool):
    """n indices sampled with ``seed``; label-balanced (n // C per class, remainder spread)."""
    if n > len(labels):
        raise ValueError(
            f"data.num_train={n} exceeds the {len(labels)} training examples available"
        )
    if n < 2 * num_labels:
        raise ValueError(
            f"data.num_train={n} is too small: need at least 2 per class ({2 * num_labels})"
        )
    rng = np.random.default_rng(seed)
    if not balanced:
        return np.sort(rng.choice(len(labels), n, replace=False))
    per = [n // num_labels + (k < n % num_labels) for k in range(num_labels)]
    picked = []
    for k, count in enumerate(per):
        pool = np.flatnonzero(labels == k)
        if count > len(pool):
            raise ValueError(f"data.num_train={n}: class {k} has only {len(pool)} examples")
        picked.append(rng.choice(pool, count, replace=False))
    return np.sort(np.concatenate(picked))


class ClassBalancedBatchSampler(BatchSampler):
    """Class-balanced batches, rank-aware: ``batch_size`` is the *global* batch (the seed paper's
    16, whatever the number of DDP ranks). Each epoch, ceil(n / batch_size) global batches of
    near-equal size are drawn with every class spread evenly over them (≥ 2 examples of every
    class per batch whenever each class has ≥ 2 per batch); rank ``rank`` of ``num_replicas``
    yields its disjoint share of every global batch, dealt class by class so each share stays
    balanced. The global batches depend on (seed, epoch) only, so any number of ranks sees the
    same data and takes the same number of optimizer steps; with one rank a share is the whole
    global batch. ``same_every_epoch``: epoch 0's batches every epoch (overfitting one batch)."""

    def __init__(
        self,
        labels,
        batch_size: int,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        same_every_epoch: bool = False,
    ):
        self.labels = np.asarray(labels)
        n = len(self.labels)
        super().__init__(range(n), batch_size, drop_last=False)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.seed, self.epoch = seed, 0
        self.same_every_epoch = same_every_epoch
        self.num_replicas, self.rank = num_replicas, rank
        self.num_batches = max(1, -(-n // batch_size))
        if n // self.num_batches < num_replicas:
            raise ValueError(
                f"data.batch_size={batch_size} over {n} training examples gives global batches "
                f"of {n // self.num_batches}, fewer than the {num_replicas} ranks that share them"
            )

    def set_epoch(self, epoch: int) -> None:
        if not self.same_every_epoch:
            self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def global_batches(self) -> list[list[int]]:
        """This epoch's global batches, in the order they are served."""
        rng = np.random.default_rng([self.seed, self.epoch])
        batches: list[list[int]] = [[] for _ in range(self.num_batches)]
        slot = 0
        for k in rng.permutation(np.unique(self.labels)):
            for i in rng.permutation(np.flatnonzero(self.labels == k)):
                batches[slot % self.num_batches].append(int(i))
                slot += 1
        return [
            [int(i) for i in rng.permutation(batches[b])] for b in rng.permutation(len(batches))
        ]

    def __iter__(self):
        for batch in self.global_batches():
            if self.num_replicas == 1:
                yield batch
                continue
            # deal the batch out class by class (stable, so the served order is kept within a
            # class): every rank gets its share of every class
            by_class = sorted(range(len(batch)), key=lambda j: self.labels[batch[j]])
            mine = sorted(by_class[self.rank :: self.num_replicas])
            yield [batch[j] for j in mine]


class GlueFewShot(L.LightningDataModule):
    """GLUE SST-2 / QNLI / MNLI under the few-shot protocol.

    num_train: N training examples sampled with ``seed`` (null: the whole train split);
    test: a fixed half of the official validation split; validation: ``val_size`` examples of
    the other half (fixed across seeds, disjoint from test); cache: reuse the labelled pool and
    the tokenised validation / test halves in later jobs of the same process (sweeps)."""

    def __init__(
        self,
        task: str,
        tokenizer,
        path: str | None = None,
        num_train: int | None = 20,
        val_size: int = 500,
        batch_size: int = 16,
        eval_batch_size: int = 64,
        max_length: int = 128,
        balanced: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        cache: bool = True,
        max_tokens: int | None = None,
    ):
        super().__init__()
        self.task = _task(task)
        self.task_name = task
        for key, value in (("balanced", balanced), ("cache", cache)):
            if not isinstance(value, bool):
                raise ValueError(f"data.{key} must be true or false. Found {value!r}")
        for key, value, low in (
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("val_size", val_size, 1),
            ("max_length", max_length, 2),  # room for the special tokens and one real one
            ("num_workers", num_workers, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"data.{key} must be an integer >= {low}. Found {value!r}")
        _check_max_length(max_length, max_tokens)
        if num_train is not None and (
            not isinstance(num_train, int) or isinstance(num_train, bool) or num_train < 1
        ):
            raise ValueError(
                f"data.num_train must be a positive integer or null (all). Found {num_train!r}"
            )
        if batch_size < 2 * self.task.num_labels:
            raise ValueError(
                f"data.batch_size={batch_size} is too small for two examples of each of "
                f"{self.task.num_labels} classes (need >= {2 * self.task.num_labels})"
            )
        if val_size < 1:
            raise ValueError(f"data.val_size must be >= 1. Found {val_size}")
        self.tokenizer = tokenizer
        self.path = path
        self.num_train, self.val_size = num_train, val_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.max_length, self.balanced, self.seed = max_length, balanced, seed
        self.num_workers = num_workers
        self.cache, self.cache_hit = cache, False
        self.splits = None

    @property
    def num_labels(self) -> int:
        return self.task.num_labels

    def module_arguments(self) -> dict:
        # the number of classes comes from the task, not a second copy in the config
        return {"num_labels": self.num_labels}

    def prepare_data(self) -> None:
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        with _quiet_preparation():
            self._prepare()

    def _prepare(self) -> None:
        key = self._cache_key()
        if key is not None and key in _PREPARED:
            # a later job of the same process (same task, files, tokenizer and lengths): the
            # labelled pool and the tokenised validation / test halves are reused as they are
            train, labels, val, test = _PREPARED[key]
            self.cache_hit = True
        else:
            train, validation = load_splits(self.task_name, self.path)
            # one numpy column (converting the dataset's column row by row takes seconds)
            labels = train.with_format("numpy", columns=["label"])[:]["label"]
            _check_halves(len(validation), self.path, self.task)
            perm = np.random.default_rng(SPLIT_SEED).permutation(len(validation))
            half = len(perm) // 2
            test_idx, val_idx = np.sort(perm[:half]), np.sort(perm[half:][: self.val_size])
            # evaluation order by length: batches of similar lengths pad little (accuracy does
            # not depend on the order)
            val = self._tokenise(validation.select(val_idx), by_length=True)
            test = self._tokenise(validation.select(test_idx), by_length=True)
            if key is not None:
                _PREPARED.clear()
                _PREPARED[key] = (train, labels, val, test)
        if self.num_train is not None:
            train = train.select(
                few_shot_indices(labels, self.num_train, self.num_labels, self.seed, self.balanced)
            )
        self.splits = {"train": self._tokenise(train), "val": val, "test": test}

    def _cache_key(self) -> tuple | None:
        """What the cached splits depend on; None (no caching) when switched off, for the hub
        (its cache is the datasets library's) or for a tokenizer without a name (``tiny``)."""
        name = getattr(self.tokenizer, "name_or_path", "")
        if not self.cache or self.path is None or not name:
            return None
        folder = _data_folder(self.path, self.task).resolve()  # a wrong path: one line
        stamp = tuple(  # the content, not only the time stamp (see _content_cache)
            (f.name, f.stat().st_mtime_ns, f.stat().st_size, _content_cache(f))
            for f in sorted(folder.iterdir())
            if f.is_file()
        )
        tok = (type(self.tokenizer).__name__, name, len(self.tokenizer))
        return (self.task_name, str(folder), stamp, tok, self.max_length, self.val_size)

    def _tokenise(self, ds, by_length: bool = False):
        fields = self.task.text_fields

        def encode(batch):
            enc = self.tokenizer(
                *(batch[f] for f in fields), truncation=True, max_length=self.max_length
            )
            return {**enc, "labels": batch["label"], "length": [len(x) for x in enc["input_ids"]]}

        keep = ["input_ids", "attention_mask", "labels"]
        ds = ds.map(encode, batched=True, remove_columns=ds.column_names)
        if by_length:
            ds = ds.sort("length").flatten_indices()
        return ds.with_format(columns=[c for c in keep if c in ds.column_names])

    def _collate(self, rows):
        labels = torch.tensor([r["labels"] for r in rows])
        feats = [{k: v for k, v in r.items() if k != "labels"} for r in rows]
        batch = self.tokenizer.pad(feats, return_tensors="pt")
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "labels": labels,
        }

    def _ranks(self) -> tuple[int, int]:
        """(rank, world size) of the trainer this data module is attached to (1 process: 0, 1).
        The loaders shard themselves (the trainer presets set use_distributed_sampler=false)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self):
        ds = self.splits["train"]
        rank, world = self._ranks()
        # Lightning's overfit_batches (debug=overfit) takes the first batches of every epoch:
        # they must be the same batches, not a fresh class-balanced draw
        overfit = bool(getattr(self.trainer, "overfit_batches", 0))
        sampler = ClassBalancedBatchSampler(
            ds["labels"], self.batch_size, self.seed, world, rank, same_every_epoch=overfit
        )
        # EpochLoader: Lightning would never set this batch sampler's epoch (every epoch would
        # serve epoch 0's batches), nor resume it between two validations of an epoch
        return EpochLoader(
            ds,
            sampler,
            trainer=self.trainer,
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    def _eval_loader(self, split):
        # each rank evaluates a disjoint strided share, no padding and no repeats: the metrics,
        # synchronised over ranks, count every example exactly once
        rank, world = self._ranks()
        ds = self.splits[split]
        return DataLoader(
            ds,
            sampler=range(rank, len(ds), world),
            batch_size=self.eval_batch_size,
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")
