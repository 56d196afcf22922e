"""The console progress bar of runs budgeted in optimizer steps."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


class StepBudgetProgressBar(RichProgressBar):
    """Lightning's rich progress bar; when training is bounded by ``max_steps`` alone (the GLUE
    few-shot budget: ``max_epochs=-1``, where the stock bar reads "Epoch 74/-2") the training
    line shows the optimizer step against the budget instead: "Epoch 74 · step 148/150"."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        by_steps = trainer.max_steps is not None and trainer.max_steps > 0
        if not (by_steps and (trainer.max_epochs is None or trainer.max_epochs < 0)):
            return super()._get_train_description(current_epoch)
        text = f"Epoch {current_epoch} · step {trainer.global_step}/{trainer.max_steps}"
        return f"{text:{len(self.validation_description)}}"  # same width: no flicker
