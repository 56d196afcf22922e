"""JiGen (Carlucci et al. 2019) as a two-objective module, and the PNG paper's JiGen + PNG.

One backbone, two heads. ℓ1 = the object cross-entropy on the ordered images of the batch
(JiGen computes it on those only), ℓ2 = the jigsaw cross-entropy (P + 1 classes: 0 = ordered,
k = permutation k) on every image. ``tasks='object'`` trains ℓ1 alone (DeepAll).

**The discrepancy** (the PNG paper's criterion is one sentence: "an adversarial discrepancy
between the latent features of the two tasks"; this is the reading implemented and why):

- *Which features*: the backbone's pooled features z = φ_θ(x) (B, d), the input of both heads.
  The object task reads them on ordered images, the jigsaw task on (mostly) shuffled ones; the
  two tasks' latent distributions are z on ordered images and z on shuffled images.
- *The discriminator* D (:class:`~moo_lightning.tasks.dg.nets.Discriminator`, an MLP
  d → 256 → 256 → 1) tells them apart: its loss is the class-balanced binary cross-entropy
  L_D = ½·mean_{ordered} BCE(D(z), 1) + ½·mean_{shuffled} BCE(D(z), 0) (balanced because only
  1 − β = 10% of the images are shuffled). D is not part of θ: it is left out of the combiner's
  gradients and of Lightning's optimizer, and takes one step of its own Adam
  (``discriminator_lr``, betas (0.5, 0.999)) after every training step, on the *detached*
  features of that step's batch — so it trains at the model's rate, one update per step.
- *The criterion*: ``criterion='adversarial'`` (default for the +adv and +PNG methods):
  F(θ) = −L_D(φ_θ) with D fixed, the minimax of Ganin et al. (2016): minimising F makes the
  features of the two tasks indistinguishable to the current D. ``criterion='confusion'``: F(θ)
  = ½Σ_classes mean BCE(D(z), ½) − log 2 ≥ 0 (Tzeng et al. 2015), the same fixed point
  (D at ½) but bounded below, for when −L_D runs away. Either is multiplied by
  ``criterion_scale``.
- *How F is used*: ``combiner=png``: F is PNG's criterion of the parameters (the core's
  ``_parameter_criterion``): the step is ∇F + Σλ_i∇ℓ_i, λ from PNG's dual over the Gram of
  [∇ℓ1, ∇ℓ2, ∇F]. Any other combiner (LS): F is added to the combined loss with weight
  ``criterion_weight`` (JiGen + adversarial loss as a regulariser).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from moo_lightning.gradients import all_reduce_grads, all_reduce_mean
from moo_lightning.module import MultiObjectiveModule
from moo_lightning.tasks.dg.jigsaw import save_permutations
from moo_lightning.tasks.dg.nets import Discriminator, build_backbone

CRITERIA = ("adversarial", "confusion")


def discriminator_loss(logits: torch.Tensor, ordered: torch.Tensor) -> torch.Tensor:
    """L_D: the class-balanced BCE of D's logits (B,) with target 1 for ordered images."""
    per = F.binary_cross_entropy_with_logits(logits, ordered.to(logits.dtype), reduction="none")
    return 0.5 * (per[ordered].mean() + per[~ordered].mean())


def confusion_loss(logits: torch.Tensor, ordered: torch.Tensor) -> torch.Tensor:
    """½Σ_classes mean BCE(D(z), ½) − log 2: 0 exactly when D says ½ to every image."""
    per = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 0.5), reduction="none")
    return 0.5 * (per[ordered].mean() + per[~ordered].mean()) - math.log(2.0)


def discrepancy(kind: str, D: nn.Module, z: torch.Tensor, ordered: torch.Tensor) -> torch.Tensor:
    """F on features z (B, d) with D held fixed (its parameters detached: F's gradient reaches
    the backbone only). Needs both ordered and shuffled images in the batch."""
    params = {k: v.detach() for k, v in D.named_parameters()}
    logits = torch.func.functional_call(D, params, (z,))
    if kind == "adversarial":
        return -discriminator_loss(logits, ordered)
    if kind == "confusion":
        return confusion_loss(logits, ordered)
    raise ValueError(f"module.criterion must be one of {', '.join(CRITERIA)} or null")


class JigsawModule(MultiObjectiveModule):
    """JiGen's network trained on (ℓ_object, ℓ_jigsaw) by a combiner, optionally with the
    discrepancy criterion F (see the module docstring). Validation: object accuracy on the
    held-out source images; the best-by-validation weights are kept in memory and tested on
    the target domain (``test/acc``)."""

    headline_metrics = ("val/acc_best", "test/acc")

    def __init__(
        self,
        combiner,
        preference,
        num_classes: int,
        num_permutations: int,
        in_channels: int = 3,
        backbone: str = "small_cnn",
        weights: str | None = None,
        width: int = 32,
        tasks: str = "both",
        criterion: str | None = None,
        criterion_weight: float = 0.0,
        criterion_scale: float = 1.0,
        discriminator_hidden: int = 256,
        discriminator_lr: float = 1e-3,
        permutations: list | None = None,
        permutation_seed: int | None = None,
        source_note: str | None = None,
        target: str | None = None,
        domains: list | None = None,
        **kwargs,
    ):
        if tasks not in ("both", "object"):
            raise ValueError(f"module.tasks must be 'both' or 'object'. Found {tasks!r}")
        if criterion is not None and criterion not in CRITERIA:
            raise ValueError(
                f"module.criterion must be one of {', '.join(CRITERIA)} or null. "
                f"Found {criterion!r}"
            )
        if criterion is not None and tasks == "object":
            raise ValueError("module.criterion compares the two tasks' features: needs tasks=both")
        for key, value in (
            ("criterion_weight", criterion_weight),
            ("criterion_scale", criterion_scale),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"module.{key} must be a number >= 0. Found {value!r}")
        m = 1 if tasks == "object" else 2
        if tasks == "object" and np.ndim(preference) == 1 and len(preference) != 1:
            preference = [1.0]
        super().__init__(combiner, preference, num_objectives=m, **kwargs)
        if criterion is not None and not self.scope.exact:
            raise ValueError(
                f"module.criterion={criterion} is a criterion of the parameters (JiGen + adv, "
                "JiGen + PNG): it needs module.gradient_scope=all. Found "
                f"{self.scope.label}"
            )
        self.tasks = tasks
        self.backbone = build_backbone(backbone, in_channels, weights, width)
        d = self.backbone.out_features
        self.object_head = nn.Linear(d, num_classes)
        self.jigsaw_head = nn.Linear(d, num_permutations + 1)
        self.criterion = criterion
        self.criterion_weight = float(criterion_weight)
        self.criterion_scale = float(criterion_scale)
        self.discriminator_lr = float(discriminator_lr)
        self.discriminator = Discriminator(d, discriminator_hidden) if criterion else None
        self._d_opt: torch.optim.Optimizer | None = None
        self._d_opt_state: dict | None = None
        self._d_batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self.backbone_name, self.weights = backbone, weights
        self.num_classes, self.num_permutations = num_classes, num_permutations
        # lists may come as config nodes (Hydra merges instantiate's arguments into the config)
        self.permutations = (
            None if permutations is None else [[int(v) for v in row] for row in permutations]
        )
        self.permutation_seed = permutation_seed
        self.source_note = None if source_note is None else str(source_note)
        self.target = None if target is None else str(target)
        self.domains = None if domains is None else [str(d) for d in domains]
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_best = MaxMetric()
        self._best_state: dict[str, torch.Tensor] | None = None
        self.val_history: list[tuple[int, float]] = []
        self._test: float | None = None

    # --- the model --------------------------------------------------------------------------

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """θ: backbone and heads; the discriminator has its own optimiser."""
        skip = set() if self.discriminator is None else set(self.discriminator.parameters())
        return [p for p in self.parameters() if p.requires_grad and p not in skip]

    def net_state(self) -> dict[str, torch.Tensor]:
        """The tested network (backbone and heads, buffers included), without D."""
        return {
            k: v.detach().clone()
            for k, v in self.state_dict().items()
            if k.startswith(("backbone.", "object_head.", "jigsaw_head."))
        }

    def objectives(self, batch) -> torch.Tensor:
        x, y, jig = batch["images"], batch["labels"], batch["jigsaw"]
        z = self.backbone(x)
        ordered = jig == 0
        logits = self.object_head(z)
        if bool(ordered.any()):
            l_obj = F.cross_entropy(logits[ordered], y[ordered])
        else:  # no ordered image in this batch: no object signal (a zero with a graph)
            l_obj = logits.sum() * 0.0
        self._representation = z
        if self.tasks == "object":
            return l_obj.reshape(1)
        l_jig = F.cross_entropy(self.jigsaw_head(z), jig)
        if self.discriminator is not None:
            both = bool(ordered.any()) and bool((~ordered).any())
            if both:
                crit = discrepancy(self.criterion, self.discriminator, z, ordered)
            else:  # one kind of image only: nothing to compare in this (rank's share of the) batch
                crit = z.sum() * 0.0
            if torch.is_grad_enabled():  # the step's features; not a recomputation after it (FAMO)
                self._d_batch = (z.detach(), ordered) if both else None
            self._parameter_criterion = self.criterion_scale * crit
        return torch.stack([l_obj, l_jig])

    # --- training ---------------------------------------------------------------------------

    def on_fit_start(self):
        super().on_fit_start()
        if self.discriminator is not None:
            self._d_opt = torch.optim.Adam(
                self.discriminator.parameters(), lr=self.discriminator_lr, betas=(0.5, 0.999)
            )
            if self._d_opt_state is not None:
                self._d_opt.load_state_dict(self._d_opt_state)
                self._d_opt_state = None

    def training_step(self, batch, batch_idx):
        results = self.multi_objective_step(self.objectives(batch))
        self.after_step(batch, results)
        self.discriminator_step()

    def discriminator_step(self) -> float | None:
        """One Adam step of D on this step's detached features (class-balanced BCE); its
        gradients averaged over DDP ranks. Returns L_D before the step."""
        if self.discriminator is None:
            return None
        batch, self._d_batch = self._d_batch, None
        # every DDP rank steps D, or none does: a rank whose share of the batch holds one kind of
        # image only adds zero gradients, so the ranks' collective calls stay paired
        active = all_reduce_mean(torch.tensor([float(batch is not None)], device=self.device))
        if float(active) == 0.0:
            return None
        self._d_opt.zero_grad(set_to_none=True)
        params = list(self.discriminator.parameters())
        if batch is None:  # zeros averaged in: D takes the step the other ranks' mean gives
            grads = [[torch.zeros_like(p) for p in params]]
        else:
            z, ordered = batch
            logits = self.discriminator(z)
            loss = discriminator_loss(logits, ordered)
            grads = [list(torch.autograd.grad(loss, params))]
        all_reduce_grads(grads)
        for p, g in zip(params, grads[0]):
            p.grad = g
        self._d_opt.step()
        if batch is None:
            return None
        with torch.no_grad():
            acc = 0.5 * (
                (logits[ordered] > 0).float().mean() + (logits[~ordered] <= 0).float().mean()
            )
        self.log_dict(
            {
                "train/discriminator_loss": float(loss.detach()),
                "train/discriminator_acc": float(acc),
            },
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )
        return float(loss.detach())

    # --- validation and test ----------------------------------------------------------------

    def validation_step(self, batch, batch_idx):
        self.val_acc.update(self.object_head(self.backbone(batch["images"])), batch["labels"])

    def on_validation_epoch_end(self):
        acc = float(self.val_acc.compute())
        self.val_acc.reset()
        if self.trainer.sanity_checking:
            return
        self.val_history.append((int(self.global_step), acc))
        if self._best_state is None or acc > float(self.val_best.compute()):
            self._best_state = {k: v.cpu() for k, v in self.net_state().items()}
        self.val_best.update(torch.tensor(acc))
        self.log("val/acc", acc, prog_bar=True)
        self.log("val/acc_best", float(self.val_best.compute()), prog_bar=True)

    def best_step(self) -> int | None:
        """The optimizer step whose weights are tested (the first best validation)."""
        if not self.val_history:
            return None
        accs = [a for _, a in self.val_history]
        return self.val_history[int(np.argmax(accs))][0]

    def on_test_start(self):
        if self._best_state is not None:
            self.load_state_dict(
                {k: v.to(self.device) for k, v in self._best_state.items()}, strict=False
            )

    def test_step(self, batch, batch_idx):
        self.test_acc.update(self.object_head(self.backbone(batch["images"])), batch["labels"])

    def on_test_epoch_end(self):
        acc = float(self.test_acc.compute())
        self.test_acc.reset()
        self._test = acc
        self.log("test/acc", acc)

    # --- checkpoints and records ------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["best_validation"] = {
            "state": self._best_state,
            "history": [list(h) for h in self.val_history],
        }
        if self._d_opt is not None:  # D's weights are in the state dict; its Adam's state here
            checkpoint["discriminator_optimizer"] = self._d_opt.state_dict()

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        best = checkpoint.get("best_validation", {})
        self._best_state = best.get("state")
        self.val_history = [tuple(h) for h in best.get("history", [])]
        if self.val_history:
            self.val_best.update(torch.tensor(max(a for _, a in self.val_history)))
        state = checkpoint.get("discriminator_optimizer")
        if state is not None:
            if self._d_opt is not None:
                self._d_opt.load_state_dict(state)
            else:
                self._d_opt_state = copy.deepcopy(state)

    def export(self, run_dir) -> dict:
        out = {
            "source_note": self.source_note,
            "target": self.target,
            "domains": self.domains,
            "backbone": self.backbone_name,
            "weights": self.weights,
            "tasks": self.tasks,
            "criterion": self.criterion,
            "criterion_weight": self.criterion_weight if self.criterion else None,
            "criterion_scale": self.criterion_scale if self.criterion else None,
            "num_classes": self.num_classes,
            "num_permutations": self.num_permutations,
            "best_step": self.best_step(),
            "val_history": [list(h) for h in self.val_history],
        }
        if self.permutations is not None:
            save_permutations(
                Path(run_dir) / "permutations.json",
                np.array(self.permutations),
                self.permutation_seed,
            )
            out["permutations"] = "permutations.json"
        out.update(self.test_results())
        return out

    def test_results(self) -> dict:
        return {} if self._test is None else {"test_acc": self._test}
