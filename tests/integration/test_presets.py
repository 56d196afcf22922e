"""The logger=tensorboard and callbacks=early_stopping|best_checkpoint presets through train.run."""

from pathlib import Path

import pytest
import torch

from tests.helpers import write_glue


def test_tensorboard_writes_events_and_hyperparameters_in_the_run_folder(run_train):
    pytest.importorskip("tensorboard")
    m = run_train("task=toy", "logger=tensorboard", "data.steps=5")
    folder = Path(m["run_dir"]) / "tensorboard"
    assert list(folder.glob("events.out.tfevents.*")) and (folder / "hparams.yaml").exists()


def test_early_stopping_stops_and_best_checkpoint_keeps_the_full_state(run_train, tmp_path):
    data = write_glue(tmp_path / "sst2", "sst2")
    m = run_train(
        "callbacks=[early_stopping,best_checkpoint]",
        "task=sst2",
        "encoder=tiny",
        f"data.path={data}",
        "logger=none",
        "optimizer.lr=0.0",  # the weights never change: no validation improves on the first
        "trainer.max_steps=12",
        "trainer.val_check_interval=2",
        "callbacks.early_stopping.patience=1",
    )
    assert m["status"] == "ok" and m["steps"] == 4  # stopped after the 2nd validation
    assert [h[0] for h in m["val_history"]] == [2, 4]
    (best,) = (Path(m["run_dir"]) / "checkpoints" / "best").glob("*.ckpt")
    assert best.name == "best-step=2.ckpt"  # the first of equal validations
    state = torch.load(best, map_location="cpu", weights_only=True)
    assert state["optimizer_states"] and state["global_step"] == 2


def _tiny_sst2(tmp_path) -> list[str]:
    return ["task=sst2", "encoder=tiny", f"data.path={write_glue(tmp_path / 'sst2', 'sst2')}"]


def test_debug_limit_runs_a_few_batches_of_everything(run_train, tmp_path):
    m = run_train(*_tiny_sst2(tmp_path), "debug=limit", "logger=csv", "data.eval_batch_size=4")
    assert m["status"] == "ok" and m["steps"] == 6
    assert [h[0] for h in m["val_history"]] == [2, 4, 6]
    assert m["test/examples"] == 8  # two test batches of 4 (the split holds 20)
    assert "model" not in m and not (Path(m["run_dir"]) / "model.ckpt").exists()
    assert list(Path(m["run_dir"]).rglob("metrics.csv"))  # the run's own logger still writes


def test_debug_overfit_drives_one_batch_losses_down(run_train, tmp_path):
    m = run_train(
        *_tiny_sst2(tmp_path), "debug=overfit", "objective=ce", "combiner=ls",
        "optimizer.lr=3e-3", "trainer.max_steps=40", "trainer.val_check_interval=20",
    )  # fmt: skip
    assert m["status"] == "ok" and m["steps"] == 40
    (loss,) = m["final_train_losses"]  # cross-entropy on the one batch it saw 40 times
    assert loss < 0.1, loss


def test_debug_profiler_writes_its_table_in_the_run_folder(run_train, tmp_path):
    m = run_train(*_tiny_sst2(tmp_path), "debug=profiler", "logger=none", "trainer.max_steps=2",
                  "trainer.val_check_interval=2")  # fmt: skip
    table = (Path(m["run_dir"]) / "fit-profile.txt").read_text()
    assert "training_step" in table and "Total" in table
