"""Records: strict JSON, settings compared across renames, checkpoint checksums."""

import json
import math

import pytest
import torch

from moo_lightning.errors import ConfigError
from moo_lightning.records import (
    ChecksummedCheckpointIO,
    settings_differences,
    strict_json,
    verify_checksum,
    write_json_atomic,
)


def test_metrics_are_strict_json(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"a": math.nan, "b": [1.0, math.inf], "c": 2})

    def refuse(token):
        raise ValueError(token)

    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse)["c"] == 2
    assert strict_json(math.nan) is None


def test_settings_recorded_before_the_renames_compare_under_the_new_names():
    saved = {
        "model": {"_target_": "moo_lightning.models.Backbone", "name": "minilm"},
        "module": {"_target_": "moo_lightning.text.TextClassificationModule", "dropout": 0.1},
        "combiner": {"_target_": "moo_lightning.combiners.linear.LinearScalarization"},
    }
    now = {
        "encoder": {"_target_": "moo_lightning.tasks.glue.encoders.Backbone", "name": "minilm"},
        "module": {
            "_target_": "moo_lightning.tasks.glue.module.TextClassificationModule",
            "dropout": 0.1,
        },
        "combiner": {"_target_": "moo_lightning.combiners.ls.LinearScalarization"},
    }
    assert settings_differences(saved, now) == []
    now["encoder"]["name"] = "tiny"
    assert settings_differences(saved, now) == ["encoder.name: 'minilm' → 'tiny'"]


def test_checkpoints_carry_a_checksum_that_is_checked(tmp_path):
    io = ChecksummedCheckpointIO()
    path = tmp_path / "a.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    assert verify_checksum(path)
    assert torch.equal(
        io.load_checkpoint(path, weights_only=True)["state_dict"]["w"], torch.ones(3)
    )
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="does not match its checksum"):
        io.load_checkpoint(path, weights_only=True)
    io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)  # replaced: new checksum
    assert verify_checksum(path)
    (tmp_path / "a.ckpt.sha256").unlink()
    with pytest.warns(UserWarning, match="no checksum file"):
        assert not verify_checksum(path)
