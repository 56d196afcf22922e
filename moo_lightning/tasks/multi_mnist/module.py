"""Pareto-set approximation on Multi-MNIST (Ye & Liu 2022, §7.2 and Table 1): N Multi-LeNets
trained together in one vectorised pass, one combiner solve per member, and their test loss /
error vectors as the set that hypervolume and IGD+ judge."""

from __future__ import annotations

import moocore
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric

from moo_lightning.combiners import LinearScalarization
from moo_lightning.combiners.base import as_preference
from moo_lightning.combiners.epo import non_uniformity
from moo_lightning.ensemble import EnsembleModule
from moo_lightning.step import CombinerSchedule
from moo_lightning.tasks.multi_mnist.lenet import StackedMultiLeNet

# the cross-entropy of a chance-level 10-class prediction, and the chance error: the reference
# point of the hypervolume logged at validation (the report uses the same)
CHANCE_LOSS = float(np.log(10.0))
CHANCE_ERROR = 0.9


def member_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (N, B, 2) of every member's two heads: logits (N, B, 2, 10), labels (B, 2)."""
    n = logits.shape[0]
    target = labels.unsqueeze(0).expand(n, -1, -1)
    ce = F.cross_entropy(logits.flatten(0, 2), target.flatten(), reduction="none")
    return ce.view(n, -1, 2)


class MemberStats(Metric):
    """Summed cross-entropy and correct predictions per member and head (N, 2), over examples;
    summed across DDP ranks."""

    def __init__(self, members: int):
        super().__init__()
        self.add_state("loss", torch.zeros(members, 2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(
            "correct", torch.zeros(members, 2, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        # logits (N, B, 2, 10), labels (B, 2)
        self.loss += member_cross_entropy(logits, labels).sum(1).double()
        self.correct += (logits.argmax(-1) == labels.unsqueeze(0)).sum(1).double()
        self.count += labels.shape[0]

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean losses (N, 2), errors (N, 2))."""
        count = self.count.clamp_min(1.0)
        return self.loss / count, 1.0 - self.correct / count


class MultiMNISTSet(EnsembleModule):
    """``members`` Multi-LeNets (stacked, vmapped) on the two cross-entropies (top-left digit,
    bottom-right digit). Set methods: LS / EPO / STCH with ``preferences='spread'`` (one
    preference per member); MGDA with independently initialised members (optionally warmed up
    with LS on spread preferences for the fraction ``ls_warmup`` of the budget, as the PNG
    paper's MGD baseline: 60 of 100 epochs);
    PNG with ``criterion='energy'`` (the energy distance of the members' loss vectors, each
    member steered by its own ∂F/∂ℓ) or ``'hypervolume'``. The final weights are tested."""

    headline_metrics = ("val/hv_loss", "test/hv_loss", "test/hv_error")

    def __init__(
        self,
        combiner,
        preference,
        members: int = 5,
        preferences: str | list | None = "spread",
        criterion: str | None = None,
        bound_criterion_grad: bool = True,
        ls_warmup: float = 0.0,
        seed: int = 0,
        source_note: str | None = None,
        **kwargs,
    ):
        super().__init__(
            combiner,
            preference,
            members=members,
            preferences=preferences,
            criterion=criterion,
            criterion_reference=(CHANCE_LOSS, CHANCE_LOSS),
            bound_criterion_grad=bound_criterion_grad,
            num_objectives=2,
            **kwargs,
        )
        if isinstance(ls_warmup, bool) or not (
            isinstance(ls_warmup, int | float) and 0 <= ls_warmup < 1
        ):
            raise ValueError(
                f"module.ls_warmup must be a fraction of the budget in [0, 1). Found {ls_warmup!r}"
            )
        if ls_warmup and preferences is None:
            # the LS warm-up follows the preference even when the combiner after it ignores it
            as_preference(preference, 2)
        self.net = StackedMultiLeNet(self.members, seed=seed)
        self.ls_warmup = float(ls_warmup)
        self.ls_warmup_steps = 0  # from the budget, at fit start
        self.source_note = source_note
        self.val_stats = MemberStats(self.members)
        self.test_stats = MemberStats(self.members)
        self.val_history: list[tuple[int, float]] = []
        self._test: tuple[np.ndarray, np.ndarray] | None = None

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["val_history"] = [list(h) for h in self.val_history]

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        self.val_history = [tuple(h) for h in checkpoint.get("val_history", [])]

    def on_fit_start(self):
        super().on_fit_start()
        self.ls_warmup_steps = int(self.ls_warmup * self.trainer.estimated_stepping_batches)
        # the declared warm-up: LS on the members' preferences, no criterion, then the combiner
        self.schedule = CombinerSchedule(LinearScalarization(), self.ls_warmup_steps)

    def objectives(self, batch) -> torch.Tensor:
        # features (N, B, 50) for gradient_scope='shared', logits (N, B, 2, 10)
        self._representation, logits = self.net(batch["images"], with_features=True)
        return member_cross_entropy(logits, batch["labels"]).mean(1)  # (N, 2)

    def validation_record(self) -> dict:
        return {"val/hv_loss": float(self.val_history[-1][1])} if self.val_history else {}

    def validation_step(self, batch, batch_idx):
        self.val_stats.update(self.net(batch["images"]), batch["labels"])

    def on_validation_epoch_end(self):
        losses, errors = (t.cpu().numpy() for t in self.val_stats.compute())
        self.val_stats.reset()
        if self.trainer.sanity_checking:
            return
        hv = float(moocore.hypervolume(losses, ref=[CHANCE_LOSS, CHANCE_LOSS]))
        self.val_history.append((int(self.global_step), hv))
        logs = {"val/hv_loss": hv, "val/error_mean": float(errors.mean())}
        for i in range(2):
            logs[f"val/loss_{i}"] = float(losses[:, i].mean())
        self.log_dict(logs, prog_bar=True)

    def test_step(self, batch, batch_idx):
        self.test_stats.update(self.net(batch["images"]), batch["labels"])

    def on_test_epoch_end(self):
        losses, errors = (t.cpu().numpy() for t in self.test_stats.compute())
        self.test_stats.reset()
        self._test = (losses, errors)
        self.log("test/hv_loss", float(moocore.hypervolume(losses, ref=[CHANCE_LOSS] * 2)))
        self.log("test/hv_error", float(moocore.hypervolume(errors, ref=[CHANCE_ERROR] * 2)))

    def export(self, run_dir) -> dict:
        out = {
            "members": self.members,
            "criterion": self.criterion,
            "ls_warmup_steps": self.ls_warmup_steps,
            "source_note": self.source_note,
            "val_history": [list(h) for h in self.val_history],
        }
        if self.preferences_matter:
            out["preferences"] = self.member_preferences.tolist()
        else:
            out["preferences"] = None
        if self._test is not None:
            losses, errors = self._test
            out.update(self.test_results())
            if self.combiner.name == "epo":
                out["non_uniformity"] = [
                    float(non_uniformity(losses[n], self.member_preferences[n])[0])
                    for n in range(self.members)
                ]
            else:
                out["non_uniformity"] = None
        return out

    def test_results(self) -> dict:
        """Each member's test losses and errors (N, 2) of the last test."""
        if self._test is None:
            return {}
        losses, errors = self._test
        return {"test_losses": losses.tolist(), "test_errors": errors.tolist()}

    @property
    def preferences_matter(self) -> bool:
        """Whether the members' preferences steer them: a combiner that uses the preference (LS,
        EPO, STCH, PNG without a coupling criterion), or the LS warm-up before any combiner."""
        return (self.combiner.uses_preference and self.criterion is None) or self.ls_warmup > 0
