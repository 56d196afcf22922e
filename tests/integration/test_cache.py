"""Jobs sharing a process reuse the pretrained encoder and the tokenised evaluation halves, and
get exactly what a fresh load would give."""

import pytest
import torch

from moo_lightning.tasks.glue import data as data_mod
from moo_lightning.tasks.glue import encoders
from moo_lightning.tasks.glue.data import GlueFewShot
from moo_lightning.tasks.glue.encoders import Backbone, tiny_roberta
from tests.helpers import write_glue


@pytest.fixture()
def saved_model(tmp_path, monkeypatch):
    monkeypatch.setattr(encoders, "_PRETRAINED", {})
    monkeypatch.setattr(data_mod, "_PREPARED", {})
    torch.manual_seed(0)
    encoder, tokenizer = tiny_roberta()
    folder = tmp_path / "model"
    encoder.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_encoder_is_loaded_once_per_process_and_copied_per_job(saved_model):
    first = Backbone(saved_model)
    second = Backbone(saved_model)
    fresh = Backbone(saved_model, cache=False)
    assert (first.cache_hit, second.cache_hit, fresh.cache_hit) == (False, True, False)
    assert second.encoder is not first.encoder
    for k, v in _state(fresh.encoder).items():
        torch.testing.assert_close(second.encoder.state_dict()[k], v, rtol=0, atol=0)
    # a job training its copy leaves the cached weights pristine for the next job
    with torch.no_grad():
        for p in second.encoder.parameters():
            p.add_(1.0)
    third = Backbone(saved_model)
    for k, v in _state(fresh.encoder).items():
        torch.testing.assert_close(third.encoder.state_dict()[k], v, rtol=0, atol=0)
    # tiny models are drawn from the seed, never cached
    assert not Backbone("tiny").cache_hit and "tiny" not in encoders._PRETRAINED


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
