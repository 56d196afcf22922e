"""The step-budget progress bar reads the budget, not "Epoch 74/-2"."""

import lightning as L
import pytest

pytest.importorskip("rich")

from moo_lightning.progress import StepBudgetProgressBar  # noqa: E402


def _description(**trainer_args) -> str:
    bar = StepBudgetProgressBar()
    trainer = L.Trainer(callbacks=[bar], logger=False, enable_checkpointing=False, **trainer_args)
    bar._trainer = trainer
    return bar._get_train_description(74).strip()


def test_a_step_budget_shows_steps_against_the_budget():
    assert _description(max_steps=150, max_epochs=-1) == "Epoch 74 · step 0/150"


def test_an_epoch_budget_keeps_lightnings_description():
    assert _description(max_epochs=100) == "Epoch 74/99"
