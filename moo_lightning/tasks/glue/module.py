"""Fine-tuning a text classifier with a loss vector (moo: two SCL-split objectives; ce, ce_scl:
single-objective baselines through the same module)."""

from __future__ import annotations

import copy

import torch
from torchmetrics import MaxMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from moo_lightning.combiners import LinearScalarization
from moo_lightning.gradients import all_reduce_mean
from moo_lightning.module import MultiObjectiveModule
from moo_lightning.tasks.glue.encoders import Backbone, TextClassifier


class TextClassificationModule(MultiObjectiveModule):
    """Encoder + head trained on ``objective(logits, features, labels) -> losses (m,)``.
    Validation accuracy at every validation (every ``trainer.val_check_interval`` steps for the
    GLUE tasks); the weights of the best validation are kept in memory and restored before
    testing (no checkpoint files needed, which suits sweeps)."""

    headline_metrics = ("val/acc_best", "test/acc")

    def __init__(
        self,
        encoder: Backbone,
        objective,
        num_labels: int,
        combiner,
        preference,
        dropout: float = 0.1,
        save_test_embeddings: bool = False,
        **kwargs,
    ):
        ok = isinstance(dropout, int | float) and not isinstance(dropout, bool)
        if not (ok and 0.0 <= dropout < 1.0):
            raise ValueError(f"module.dropout must be a probability in [0, 1). Found {dropout!r}")
        if objective.num_objectives == 1:  # baselines: nothing to combine
            if not isinstance(combiner, LinearScalarization):
                raise ValueError(
                    f"objective {objective.name!r} has a single loss: combiner must be 'ls' "
                    f"(what objective={objective.name} selects). Found combiner "
                    f"{combiner.name!r}"
                )
            preference = [1.0]
        super().__init__(combiner, preference, num_objectives=objective.num_objectives, **kwargs)
        self.classifier = TextClassifier(encoder, num_labels, dropout)
        self.objective = objective
        self.backbone_name = encoder.name
        self.val_acc = MulticlassAccuracy(num_labels, average="micro")
        self.test_acc = MulticlassAccuracy(num_labels, average="micro")
        self.val_best = MaxMetric()
        self.test_count = SumMetric()
        self._best_state: dict[str, torch.Tensor] | None = None
        self.save_test_embeddings = save_test_embeddings
        self._test_features: list[torch.Tensor] = []
        self._test_labels: list[torch.Tensor] = []
        self._epoch_losses: list[torch.Tensor] = []
        self._losses_epoch: int | None = None  # the epoch _epoch_losses belong to
        # (optimizer step, validation accuracy) of every validation: the run's learning curve
        self.val_history: list[tuple[int, float]] = []
        self.final_train_losses: list[float] | None = None

    @property
    def method_name(self) -> str:
        """A single-loss baseline is called by its objective (ce, ce_scl), a split loss by the
        combiner that steered it."""
        if self.objective.num_objectives == 1:
            return self.objective.name
        return super().method_name

    def objectives(self, batch) -> torch.Tensor:
        logits, features = self.classifier(batch["input_ids"], batch["attention_mask"])
        self._representation = features  # for gradient_scope='representation'
        return self.objective(logits, features, batch["labels"])

    def training_step(self, batch, batch_idx):
        losses = self.objectives(batch)
        self.after_step(batch, self.multi_objective_step(losses))
        # the global batch's losses (the mean over DDP ranks, so the record does not depend on
        # how many ranks shared the batch), gathered per epoch
        if self._losses_epoch != self.current_epoch:
            self._epoch_losses, self._losses_epoch = [], self.current_epoch
        self._epoch_losses.append(all_reduce_mean(losses.detach()).float().cpu())
        # the loss vector of the epoch so far (of the last epoch once the run ends), for
        # loss-space figures; kept current at every step, so an epoch-end checkpoint (written
        # before the module's own epoch-end hook) holds the epoch's whole mean, and the steps of
        # the epoch so far travel in every checkpoint (one taken inside an epoch resumes them)
        self.final_train_losses = torch.stack(self._epoch_losses).mean(0).tolist()

    def on_train_epoch_end(self):
        self._epoch_losses = []

    def validation_step(self, batch, batch_idx):
        logits, _ = self.classifier(batch["input_ids"], batch["attention_mask"])
        self.val_acc.update(logits.argmax(-1), batch["labels"])

    def on_validation_epoch_end(self):
        acc = self.val_acc.compute()
        self.val_acc.reset()
        if self.trainer.sanity_checking:
            return
        if self._best_state is None or acc > self.val_best.compute():
            self._best_state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in self.classifier.state_dict().items()}
            )
        self.val_best.update(acc)
        self.val_history.append((int(self.global_step), float(acc)))
        self.log("val/acc", acc, prog_bar=True, sync_dist=True)  # equal on all ranks
        self.log("val/acc_best", self.val_best.compute(), prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        state = self._best_state
        if "optimizer_states" not in checkpoint and state is not None:
            # a weights-only file (the run's model.ckpt) holds the weights that are tested, the
            # best-by-validation ones, as its state dict, and no second copy of them
            checkpoint["state_dict"].update({f"classifier.{k}": v for k, v in state.items()})
            state = None
        checkpoint["best_validation"] = {
            "state": state,
            "acc": None if self._best_state is None else float(self.val_best.compute()),
            "history": list(self.val_history),
            "final_train_losses": self.final_train_losses,
            "epoch_losses": {
                "epoch": self._losses_epoch,
                "losses": [x.tolist() for x in self._epoch_losses],
            },
        }

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        best = checkpoint.get("best_validation", {})
        self._best_state = best.get("state")
        self.val_history = [tuple(h) for h in best.get("history", [])]
        self.final_train_losses = best.get("final_train_losses", self.final_train_losses)
        epoch = best.get("epoch_losses", {"epoch": None, "losses": []})
        self._losses_epoch = epoch["epoch"]
        self._epoch_losses = [torch.tensor(x) for x in epoch["losses"]]
        if best.get("acc") is not None:
            self.val_best.update(torch.tensor(best["acc"]))

    def validation_record(self) -> dict:
        if not self.val_history:
            return {}
        return {
            "val/acc": float(self.val_history[-1][1]),
            "val/acc_best": float(max(acc for _, acc in self.val_history)),
        }

    def _best_step(self) -> int | None:
        """The optimizer step whose weights are tested (the first best validation)."""
        if not self.val_history:
            return None
        return max(self.val_history, key=lambda h: (h[1], -h[0]))[0]

    def on_test_start(self):
        if self._best_state is not None:
            self.classifier.load_state_dict(self._best_state)

    def test_step(self, batch, batch_idx):
        logits, features = self.classifier(batch["input_ids"], batch["attention_mask"])
        if self.save_test_embeddings:
            self._test_features.append(features.detach().float().cpu())
            self._test_labels.append(batch["labels"].cpu())
        self.test_acc.update(logits.argmax(-1), batch["labels"])
        self.test_count.update(torch.ones_like(batch["labels"], dtype=torch.float32))
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)
        # examples evaluated, summed over DDP ranks: each test example counted once
        self.log("test/examples", self.test_count, on_step=False, on_epoch=True)

    def on_test_epoch_end(self):
        if self.save_test_embeddings and self.trainer.world_size > 1:  # same on every rank
            # each rank embedded its own share of the test set: rank 0 keeps them all
            import torch.distributed as dist

            shares = [None] * self.trainer.world_size
            feats, labels = self._test_features, self._test_labels
            mine = (torch.cat(feats), torch.cat(labels)) if feats else None
            dist.all_gather_object(shares, mine)
            self._test_features = [sh[0] for sh in shares if sh is not None]
            self._test_labels = [sh[1] for sh in shares if sh is not None]

    def export(self, run_dir) -> dict:
        if self._test_features:  # [CLS] features of the test set, for t-SNE figures
            import numpy as np

            np.savez_compressed(
                f"{run_dir}/test_embeddings.npz",
                features=torch.cat(self._test_features).numpy(),
                labels=torch.cat(self._test_labels).numpy(),
            )
        return {
            "final_train_losses": self.final_train_losses,
            "val_history": [list(h) for h in self.val_history],
            "best_step": self._best_step(),
            "objective": self.objective.name,
            "encoder": self.backbone_name,
        }
