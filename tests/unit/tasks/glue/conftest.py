import pytest
import torch

from moo_lightning.tasks.glue import data as data_mod
from moo_lightning.tasks.glue import encoders
from moo_lightning.tasks.glue.encoders import tiny_roberta


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
