"""Records: strict JSON, settings compared across renames, checkpoint checksums."""

import json
import math

import pytest
import torch

from moo_lightning.errors import ConfigError
from moo_lightning.record import RunRecord, strict_json, write_json_atomic
from moo_lightning.records import ChecksummedCheckpointIO, settings_differences, verify_checksum


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
    now = {  # 0.3: the encoder inside the text module
        "module": {
            "encoder": {"_target_": "moo_lightning.tasks.glue.encoders.Backbone", "name": "minilm"},
            "_target_": "moo_lightning.tasks.glue.module.TextClassificationModule",
            "dropout": 0.1,
        },
        "combiner": {"_target_": "moo_lightning.combiners.ls.LinearScalarization"},
    }
    assert settings_differences(saved, now) == []
    between = {**now, "encoder": dict(now["module"]["encoder"]), "module": {"dropout": 0.1}}  # 0.2
    assert settings_differences(between, now) == []
    now["module"]["encoder"]["name"] = "tiny"  # named as users type it
    assert settings_differences(saved, now) == ["encoder.name: 'minilm' → 'tiny'"]
    assert settings_differences(between, now) == ["encoder.name: 'minilm' → 'tiny'"]


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


def test_the_summary_block_says_where_what_and_how_it_ended(tmp_path):
    from moo_lightning.cli.console import summary

    m = {
        "status": "ok",
        "task": "sst2",
        "choices": {"task": "sst2", "encoder": "minilm", "objective": "moo"},
        "combiner": "epo",
        "preference": [0.1, 0.9],
        "seed": 0,
        "val/acc_best": 0.6,
        "test/acc": 0.58,
        "best_step": 75,
        "final_train_losses": [0.5, 0.25],
        "steps": 150,
        "skipped_steps": 0,
        "wall_time_s": 12.0,
        "timing_s": {"fit": 10.0},
        "model": "model.ckpt",
    }
    record = RunRecord.from_json(m)
    lines = summary(tmp_path, record, headline=("val/acc_best", "test/acc")).splitlines()
    assert lines[0] == f"== ok: {tmp_path}"
    assert (
        lines[1]
        == "   sst2 · encoder minilm · objective moo · combiner epo · r (0.1, 0.9) · seed 0"
    )
    assert "test/acc 0.58" in lines[2] and "best at step 75" in lines[2]
    assert "final losses (0.5000, 0.2500)" in lines[2]
    assert lines[3].endswith("metrics.json, model.ckpt") and "150 steps, 0 skipped" in lines[3]
