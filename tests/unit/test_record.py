"""The run record (metrics.json): one flat strict-JSON object, fields the task cannot replace,
and records of older layouts read through the one upgrade function, into the same tables."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from moo_lightning.record import RunRecord, upgrade

ROOT = Path(__file__).resolve().parents[2]


def a_record(**changes) -> RunRecord:
    record = RunRecord(
        task="sst2",
        status="ok",
        choices={"task": "sst2", "encoder": "minilm"},
        num_train=20,
        combiner="epo",
        seed=3,
        preference=[0.2, 0.8],
        steps=150,
        combiner_fallbacks=0,
        combiner_recoveries=0,
        skipped_steps=1,
        stopped_early=None,
        world_size=1,
        precision="32-true",
        val={"val/acc": 0.5, "val/acc_best": 0.6},
        test={"test/acc": 0.58},
        model="model.ckpt",
        model_bytes=1000,
        logs=["csv/metrics.csv"],
        timing_s={"fit": 10.0},
        cache_hits={"encoder": False, "data": True},
        wall_time_s=12.0,
        settings={"seed": 3, "optimizer": {"lr": 1e-5}},
        complete=True,
    )
    record.add_task_metrics({"best_step": 75, "final_train_losses": [0.5, 0.25]})
    for key, value in changes.items():
        setattr(record, key, value)
    return record


def test_the_record_is_flat_on_disk_and_reads_back_the_same(tmp_path):
    record = a_record()
    record.write(tmp_path)
    raw = json.loads((tmp_path / "metrics.json").read_text())
    # the layout every reader and the W&B summary know: one object, metrics under their own keys
    assert list(raw)[:3] == ["task", "status", "choices"]
    assert raw["val/acc_best"] == 0.6 and raw["test/acc"] == 0.58 and raw["best_step"] == 75
    assert "val" not in raw and "task_metrics" not in raw
    assert "status_reason" not in raw and "ddp_equals_one_process" not in raw  # runs' own only
    assert list(raw)[-6:] == [
        "logs",
        "timing_s",
        "cache_hits",
        "wall_time_s",
        "settings",
        "complete",
    ]
    again = RunRecord.read(tmp_path)
    assert again == record and again.to_json() == raw
    assert again.get("test/acc") == 0.58 and again.get("best_step") == 75 and again.steps == 150
    assert "val/acc" in again and "val/nothing" not in again
    assert again.metric("val/acc_best") == 0.6
    assert a_record(status="diverged").metric("val/acc_best") is None  # no result, no metric


def test_a_task_adds_entries_but_cannot_replace_the_records_own():
    record = a_record()
    with pytest.raises(ValueError, match=r"\['steps', 'test/acc'\] are the run record's own"):
        record.add_task_metrics({"steps": 300, "test/acc": 1.0, "final_g": 0.0})
    assert record.steps == 150 and "final_g" not in record


def test_non_finite_numbers_are_written_as_null_and_refused_when_read_strictly(tmp_path):
    a_record(wall_time_s=float("nan")).write(tmp_path)
    assert RunRecord.read(tmp_path).wall_time_s is None
    (tmp_path / "metrics.json").write_text('{"complete": true, "wall_time_s": NaN}')
    with pytest.raises(ValueError, match="NaN is not strict JSON"):
        RunRecord.read(tmp_path)
    assert RunRecord.find(tmp_path).complete  # a hand-edited record is still the folder's
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        RunRecord.read(tmp_path)
    assert RunRecord.find(tmp_path / "nowhere") is None


def old_layout(seed: int, loss: str, val: float, test: float) -> dict:
    """A text run as records were written before the renames: the combiner that ran under
    combiner_used, the encoder's name under model, no status and no settings."""
    moo = loss != "CE"
    return {
        "task": "sst2",
        "num_train": 20,
        "seed": seed,
        "objective": "moo" if moo else "ce",
        "combiner": "ls",
        "combiner_used": "epo" if moo else "ls",
        "model": "minilm",
        "preference": [0.2, 0.8] if moo else [1.0],
        "val/acc_best": val,
        "test/acc": test,
        "final_train_losses": [0.5, 0.4 + seed / 10] if moo else [0.7],
        "skipped_steps": 0,
        "wall_time_s": 3.0,
        "complete": True,
    }


def test_the_upgrade_reads_an_old_record_under_todays_names():
    record = RunRecord.from_json(old_layout(1, "CE+EPO", 0.6, 0.7))
    assert record.combiner == "epo" and record.status == "ok" and record.settings is None
    assert record.get("encoder") == "minilm" and record.model is None
    assert "combiner_used" not in record.to_json()
    # a saved model file is today's "model", never taken for an encoder
    assert upgrade({"model": "model.ckpt"})["model"] == "model.ckpt"
    assert upgrade({"status": "diverged"})["status"] == "diverged"


def test_old_and_new_layouts_make_the_same_table(tmp_path):
    """sweep/report.py reads the README's reproductions, written in the old layout, into the same
    numbers as the same runs recorded today."""
    config = {"objective": {"temperature": 0.3, "lam": 0.3}, "optimizer": {"lr": 1e-5}}
    for layout in ("old", "new"):
        for seed in range(3):
            for loss, val, test in (
                ("CE", 0.5, 0.6 + seed / 50),
                ("CE+EPO", 0.7, 0.65 + seed / 40),
            ):
                folder = tmp_path / layout / f"{loss}_s{seed}"
                (folder / ".hydra").mkdir(parents=True)
                (folder / ".hydra" / "config.yaml").write_text(
                    yaml.safe_dump(config, sort_keys=False)
                )
                m = old_layout(seed, loss, val, test)
                if layout == "new":
                    m = RunRecord.from_json(m)
                    m.settings, m.world_size, m.precision = config, 1, "32-true"
                    m = m.to_json()
                    assert "model" not in m and m["encoder"] == "minilm"
                (folder / "metrics.json").write_text(json.dumps(m))
    outputs = {}
    for layout in ("old", "new"):
        out = tmp_path / f"report_{layout}"
        proc = subprocess.run(
            [sys.executable, "sweep/report.py", str(tmp_path / layout), "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        outputs[layout] = [(out / f).read_text() for f in ("table.md", "table.csv", "runs.csv")]
    assert outputs["old"] == outputs["new"]
    assert "| CE+EPO | 20 |" in outputs["old"][0] and "minilm" in outputs["old"][2]


def test_the_scope_the_set_and_jigen_modules_always_had_is_filled_in_for_old_runs():
    from moo_lightning.record import upgrade_settings
    from moo_lightning.sweeps import trial_key

    mm = "moo_lightning.tasks.multi_mnist.module.MultiMNISTSet"
    old = {"seed": 3, "module": {"_target_": mm, "members": 1}}
    new = {"seed": 4, "module": {"_target_": mm, "members": 1, "gradient_scope": "all"}}
    assert upgrade_settings(old)["module"]["gradient_scope"] == "all"
    assert trial_key(upgrade_settings(old), 3) == trial_key(upgrade_settings(new), 4)
    shared = {"seed": 4, "module": {"_target_": mm, "members": 1, "gradient_scope": "shared"}}
    assert upgrade_settings(shared)["module"]["gradient_scope"] == "shared"  # kept
    toy = {"module": {"_target_": "moo_lightning.tasks.toy.ToyModule", "n": 10}}
    assert "gradient_scope" not in upgrade_settings(toy)["module"]  # its config names none
