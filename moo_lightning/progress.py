"""The console progress bar of runs budgeted in optimizer steps."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


def budgeted_in_steps(trainer) -> bool:
    """Training bounded by ``max_steps`` alone (``max_epochs`` -1 or unset)."""
    by_steps = trainer.max_steps is not None and trainer.max_steps > 0
    return by_steps and (trainer.max_epochs is None or trainer.max_epochs < 0)


class StepBudgetProgressBar(RichProgressBar):
    """Lightning's rich progress bar; when training is bounded by ``max_steps`` alone (the GLUE
    few-shot budget, where the stock bar reads "Epoch 74/-2") the training line shows the
    optimizer step against the budget, updated after every batch: "Epoch 74 · step 148/150"."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if not budgeted_in_steps(trainer):
            return super()._get_train_description(current_epoch)
        text = f"Epoch {current_epoch} · step {trainer.global_step}/{trainer.max_steps}"
        return f"{text:{len(self.validation_description)}}"  # same width: no flicker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning sets the description at each epoch's start only; the step moves every batch
        ready = self.progress is not None and self.train_progress_bar_id is not None
        if ready and budgeted_in_steps(trainer):
            description = self._get_train_description(trainer.current_epoch)
            self.progress.update(self.train_progress_bar_id, description=description)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
