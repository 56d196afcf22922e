"""What the combiner comparison (sweep=combiners_mm) adds to a Multi-MNIST run: the test
accuracy of each task as scalars (``test/acc_1``, ``test/acc_2``), so metrics.json and the W&B
summary carry them and a dashboard can draw them per combiner."""

from __future__ import annotations

import lightning as L


class TaskAccuracy(L.Callback):
    """Logs ``test/acc_1`` and ``test/acc_2``: 1 − the test error of each task (digit), the mean
    over the set's members (the one model's own with ``module.members=1``). Reads the module's
    test statistics before the module's own epoch-end hook resets them (Lightning calls the
    callbacks' hooks first)."""

    def on_test_epoch_end(self, trainer, pl_module):
        stats = getattr(pl_module, "test_stats", None)
        if stats is None:
            return
        _, errors = stats.compute()
        for i, err in enumerate(errors.mean(0).tolist(), start=1):
            pl_module.log(f"test/acc_{i}", 1.0 - float(err))
