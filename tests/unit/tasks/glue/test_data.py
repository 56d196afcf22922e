"""Few-shot GLUE data: balanced seeded sampling, batches with two of every class shared by the
ranks, labels as people write them, validation in another format; and the tokenised evaluation
halves prepared once per process (sweep jobs sharing a process), exactly what a fresh
preparation gives."""

import json

import numpy as np
import pytest

from moo_lightning.tasks.glue import data as data_mod
from moo_lightning.tasks.glue.data import ClassBalancedBatchSampler, GlueFewShot, few_shot_indices
from moo_lightning.tasks.glue.encoders import Backbone
from tests.helpers import write_glue


def test_few_shot_sampling_is_balanced_seeded_and_validated():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    a = few_shot_indices(labels, 20, 3, seed=1, balanced=True)
    assert len(a) == 20 and sorted(np.bincount(labels[a])) == [6, 7, 7]
    assert np.array_equal(a, few_shot_indices(labels, 20, 3, seed=1, balanced=True))
    assert not np.array_equal(a, few_shot_indices(labels, 20, 3, seed=2, balanced=True))
    with pytest.raises(ValueError, match="num_train=200 exceeds the 100"):
        few_shot_indices(labels, 200, 3, 0, True)
    with pytest.raises(ValueError, match="num_train=4 is too small"):
        few_shot_indices(labels, 4, 3, 0, True)


@pytest.mark.parametrize(
    ("n", "classes", "batch"), [(20, 2, 16), (20, 3, 16), (50, 3, 16), (100, 2, 16)]
)
def test_batches_hold_two_of_every_class(n, classes, batch):
    labels = np.arange(n) % classes
    sampler = ClassBalancedBatchSampler(labels, batch, seed=0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert all(len(b) <= batch for b in batches)
        assert all(np.bincount(labels[b], minlength=classes).min() >= 2 for b in batches)


@pytest.mark.parametrize(
    ("n", "classes", "batch"), [(20, 2, 16), (32, 2, 16), (30, 3, 18), (45, 3, 16), (100, 2, 16)]
)
@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_share_every_global_batch_disjointly_and_balanced(n, classes, batch, world):
    labels = np.arange(n) % classes
    one = ClassBalancedBatchSampler(labels, batch, seed=4)
    ranks = [ClassBalancedBatchSampler(labels, batch, 4, world, r) for r in range(world)]
    for epoch in range(3):
        for s in (one, *ranks):
            s.set_epoch(epoch)
        global_batches = list(one)
        shares = [list(s) for s in ranks]
        # the same number of steps on every rank and for any number of ranks
        assert all(len(sh) == len(global_batches) == len(one) for sh in shares)
        for step, gb in enumerate(global_batches):
            parts = [sh[step] for sh in shares]
            assert sorted(i for p in parts for i in p) == sorted(gb)  # disjoint, complete
            assert max(map(len, parts)) - min(map(len, parts)) <= 1  # uneven by one at most
            for p in parts:  # each share holds >= 2 of every class when the sizes allow
                counts = np.bincount(labels[p], minlength=classes)
                if len(gb) // classes >= 2 * world:
                    assert counts.min() >= 2, (step, p)
                # and is spread over classes as evenly as its global batch allows
                assert counts.max() - counts.min() <= -(-len(gb) // (classes * world)) + 1


def test_too_many_ranks_for_the_batch_is_one_clear_error():
    with pytest.raises(ValueError, match="global batches of 4, fewer than the 5 ranks"):
        ClassBalancedBatchSampler(np.arange(8) % 2, 4, 0, num_replicas=5, rank=0)


@pytest.mark.parametrize(("values", "text"), [((0.0, 1.0), "floats"), ((False, True), "bools")])
def test_integer_valued_floats_and_booleans_are_labels(tmp_path, values, text):
    import json

    from moo_lightning.tasks.glue.data import load_splits

    for split in ("train", "validation"):
        rows = [{"sentence": f"{text} {i}", "label": values[i % 2]} for i in range(6)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train, validation = load_splits("sst2", str(tmp_path))
    assert train["label"] == validation["label"] == [0, 1, 0, 1, 0, 1]


def test_validation_may_be_in_another_format_than_train(tmp_path):
    from moo_lightning.tasks.glue.data import load_splits

    rows = [{"sentence": f"film {i}", "label": i % 2} for i in range(6)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "validation.csv").write_text(
        "sentence,label\n" + "".join(f"{r['sentence']},{r['label']}\n" for r in rows[:4])
    )
    train, val = load_splits("sst2", str(tmp_path))
    assert len(train) == 6 and len(val) == 4 and list(val["label"]) == [0, 1, 0, 1]


def test_batch_sampler_can_serve_the_same_batches_every_epoch():
    """debug=overfit: Lightning's overfit_batches takes each epoch's first batch, which must be
    the same batch every epoch; normal training draws new class-balanced batches per epoch."""
    labels = [0, 1] * 20
    fresh = ClassBalancedBatchSampler(labels, 16, seed=3)
    fixed = ClassBalancedBatchSampler(labels, 16, seed=3, same_every_epoch=True)
    first = list(fixed)
    fresh_first = list(fresh)
    fresh.set_epoch(1)
    fixed.set_epoch(1)
    assert list(fixed) == first == fresh_first
    assert list(fresh) != first


# --- prepared once per process --------------------------------------------------------------------


def _rows(ds):
    return [(list(r["input_ids"]), int(r["labels"])) for r in ds]


def test_evaluation_halves_are_prepared_once_per_process(saved_model, tmp_path, monkeypatch):
    folder = write_glue(tmp_path / "sst2", "sst2")
    tokenizer = Backbone(saved_model).tokenizer
    calls = []
    real = data_mod.load_splits
    monkeypatch.setattr(
        data_mod, "load_splits", lambda *a: calls.append(a) or real(*a), raising=True
    )

    def prepared(seed, cache=True):
        dm = GlueFewShot("sst2", tokenizer, path=str(folder), val_size=10, seed=seed, cache=cache)
        dm.setup()
        return dm

    a, b = prepared(0), prepared(1)
    assert (a.cache_hit, b.cache_hit, len(calls)) == (False, True, 1)
    assert b.splits["test"] is a.splits["test"] and b.splits["val"] is a.splits["val"]
    # the seed still picks the training examples; a fresh preparation gives the same rows
    assert _rows(a.splits["train"]) != _rows(b.splits["train"])
    fresh = prepared(1, cache=False)
    assert not fresh.cache_hit and len(calls) == 2
    for split in ("train", "val", "test"):
        assert _rows(fresh.splits[split]) == _rows(b.splits[split])
    # edited files are read again
    with open(folder / "validation.jsonl", "a") as f:
        f.write('{"sentence": "one more row", "label": 1, "idx": 99}\n')
    assert not prepared(2).cache_hit and len(calls) == 3


class _NamedTokenizer:
    """Stands for a pretrained tokenizer: its name makes the data cache key read the folder."""

    name_or_path = "a-named-tokenizer"

    def __len__(self) -> int:
        return 10


@pytest.mark.parametrize("given", ["missing", "file"])
@pytest.mark.parametrize("cache", [True, False])
def test_a_data_path_that_is_no_folder_is_one_line_saying_what_it_must_hold(tmp_path, given, cache):
    """A missing folder or a file (train.jsonl itself) is refused naming data.path and the two
    layouts, whether the cache key (a named tokenizer) or the reading looks at it first."""
    folder = write_glue(tmp_path / "sst2", "sst2")
    path = tmp_path / "nope" if given == "missing" else folder / "train.jsonl"
    dm = GlueFewShot("sst2", _NamedTokenizer(), path=str(path), cache=cache)
    with pytest.raises(FileNotFoundError) as info:
        dm.setup()
    line = str(info.value)
    assert line.startswith(f"data.path {str(path)!r} is not a folder") and "\n" not in line
    assert "train.* and validation.* (jsonl, json, parquet or csv" in line
    assert "columns sentence, label" in line and "GLUE TSVs train.tsv and dev.tsv" in line
    if given == "file":
        assert f"(a file; the folder holding it is {folder})" in line
