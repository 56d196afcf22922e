"""The multi-objective LightningModule: losses (m,) -> one optimizer step steered by a combiner."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import torch

from moo_lightning.combiners.base import Combiner, as_preference
from moo_lightning.gradients import (
    all_reduce_grads,
    gram_matrix,
    objective_grads,
    write_direction,
)

OptimizerFactory = Callable[[Sequence[torch.nn.Parameter]], torch.optim.Optimizer]


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a NaN/inf loss or gradient."""


class MultiObjectiveModule(L.LightningModule):
    """Base module with manual optimisation. Subclasses implement ``objectives(batch)`` returning
    the loss vector (m,) — or (N, m) for an ensemble of N members, each with its own parameters
    (``member_parameters``) and its own combiner solve.

    Each step: per-objective gradients by autograd over the trainable parameters, Gram matrix
    K = GGᵀ (averaged over DDP ranks first), combiner weights w, ``.grad`` = Gᵀw, optional
    gradient-norm clipping, optimizer and scheduler step. A combiner that needs no Gram (LS)
    takes one ordinary backward of Σ w_i ℓ_i instead. Steps with non-finite losses or
    gradients are skipped and counted; ``max_bad_steps`` consecutive ones stop the run.
    """

    def __init__(
        self,
        combiner: Combiner,
        preference: Sequence[float] | float,
        optimizer: OptimizerFactory | None = None,
        scheduler: Callable | None = None,
        gradient_clip_val: float | None = None,
        max_bad_steps: int = 10,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.combiner = combiner
        self.preference = as_preference(preference)
        self.optimizer_factory = optimizer or (lambda ps: torch.optim.AdamW(ps, lr=1e-5))
        self.scheduler_factory = scheduler
        if gradient_clip_val is not None and gradient_clip_val <= 0:
            raise ValueError(f"gradient_clip_val must be > 0 or null. Found {gradient_clip_val}")
        self.gradient_clip_val = gradient_clip_val
        if max_bad_steps < 1:
            raise ValueError(f"max_bad_steps must be >= 1. Found {max_bad_steps}")
        self.max_bad_steps = max_bad_steps
        self.fallbacks = 0
        self.skipped_steps = 0
        self._consecutive_bad = 0

    # --- what subclasses provide -------------------------------------------------------------

    def objectives(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def member_parameters(self) -> list[list[torch.nn.Parameter]]:
        """Parameter groups, one per ensemble member (a single model: one group)."""
        return [[p for p in self.parameters() if p.requires_grad]]

    def criterion_grads(self, losses: torch.Tensor) -> torch.Tensor | None:
        """∂F/∂ℓ per member (N, m) for criteria that couple members (energy ensembles)."""
        return None

    # --- Lightning hooks ------------------------------------------------------------------------

    def configure_optimizers(self):
        params = [p for group in self.member_parameters() for p in group]
        opt = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(opt)}}

    def training_step(self, batch, batch_idx):
        losses = self.objectives(batch)
        self.multi_objective_step(losses)
        return None

    def on_save_checkpoint(self, checkpoint):
        checkpoint["moo_counters"] = {
            "fallbacks": self.fallbacks,
            "skipped_steps": self.skipped_steps,
            "consecutive_bad": self._consecutive_bad,
        }

    def on_load_checkpoint(self, checkpoint):
        counters = checkpoint.get("moo_counters", {})
        self.fallbacks = counters.get("fallbacks", 0)
        self.skipped_steps = counters.get("skipped_steps", 0)
        self._consecutive_bad = counters.get("consecutive_bad", 0)

    # --- the step -------------------------------------------------------------------------------

    def multi_objective_step(self, losses: torch.Tensor) -> list | None:
        """One optimizer step from the loss vector (m,) or (N, m). Returns the combiner results
        (one per member), or None when the step was skipped."""
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        stacked = losses if losses.dim() == 2 else losses.unsqueeze(0)
        groups = self.member_parameters()
        if stacked.shape[0] != len(groups):
            raise ValueError(
                f"objectives returned {stacked.shape[0]} rows of losses for {len(groups)} members"
            )
        if not torch.isfinite(stacked).all():
            return self._bad_step(f"non-finite losses {stacked.detach().cpu().tolist()}")

        fgrads = self.criterion_grads(stacked)
        results = []
        if not self.combiner.needs_gram:
            results = [
                self.combiner(row.detach(), None, self.preference) for row in stacked.unbind(0)
            ]
            total = sum((r.weights * row).sum() for r, row in zip(results, stacked.unbind(0)))
            self.manual_backward(total)
            if not all(
                torch.isfinite(p.grad).all() for g in groups for p in g if p.grad is not None
            ):
                return self._bad_step("non-finite gradients")
        else:
            member_grads = []
            last = len(groups) - 1
            for j, (row, params) in enumerate(zip(stacked.unbind(0), groups)):
                grads = objective_grads(row, params, keep_graph=j < last)
                all_reduce_grads(grads)
                member_grads.append(grads)
            for j, (row, grads, params) in enumerate(zip(stacked.unbind(0), member_grads, groups)):
                K = gram_matrix(grads)
                if not torch.isfinite(K).all():
                    return self._bad_step("non-finite gradients (Gram matrix)")
                extra = {} if fgrads is None else {"criterion_grad": fgrads[j]}
                res = self.combiner(row.detach(), K, self.preference, **extra)
                write_direction(grads, res.weights, params)
                results.append(res)

        self._consecutive_bad = 0
        if self.gradient_clip_val is not None:
            self.clip_gradients(
                opt, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )
        opt.step()
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        self.fallbacks += sum(r.fallback for r in results)
        self._log_step(stacked.detach(), results)
        return results

    def _bad_step(self, why: str):
        self.skipped_steps += 1
        self._consecutive_bad += 1
        self.optimizers().zero_grad(set_to_none=True)
        self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)
        if self._consecutive_bad >= self.max_bad_steps:
            raise NonFiniteError(
                f"{self._consecutive_bad} consecutive steps with {why} "
                f"(max_bad_steps={self.max_bad_steps}); stopping. Lower the learning rate, "
                "check the data, or raise max_bad_steps."
            )
        return None

    def _log_step(self, losses: torch.Tensor, results) -> None:
        logs: dict[str, float] = {}
        single = losses.shape[0] == 1
        for j, (row, res) in enumerate(zip(losses, results)):
            tag = "" if single else f"member{j}/"
            for i, v in enumerate(row.tolist()):
                logs[f"train/{tag}loss_{i}"] = v
            for i, v in enumerate(res.weights.tolist()):
                logs[f"train/{tag}weight_{i}"] = v
            for k, v in res.diagnostics.items():
                logs[f"train/combiner/{tag}{k}"] = float(v)
        logs["train/combiner/fallbacks"] = float(self.fallbacks)
        logs["train/skipped_steps"] = float(self.skipped_steps)
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=1)
