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
