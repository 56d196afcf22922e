"""The multi-objective LightningModule: losses (m,) -> one optimizer step steered by a combiner."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

from moo_lightning.combiners.base import Combiner, as_preference
from moo_lightning.gradients import (
    all_reduce_grads,
    all_reduce_gram,
    all_reduce_mean,
    gram_matrix,
    objective_grads,
    write_direction,
)

OptimizerFactory = Callable[[Sequence[torch.nn.Parameter]], torch.optim.Optimizer]


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a NaN/inf loss or gradient."""


class ConfigError(ValueError):
    """A wrong setting that can only be detected once training has been set up (the module's
    parameters or features are needed): reported by train.py as one line, like the bad input
    caught before training, while other errors raised during training keep their traceback."""


class MultiObjectiveModule(L.LightningModule):
    """Base module with manual optimisation. Subclasses implement ``objectives(batch)`` returning
    the loss vector (m,) — or (N, m) for an ensemble of N members, each with its own parameters
    (``member_parameters``) and its own combiner solve.

    Each step (``gradient_scope='all'``, exact): per-objective gradients by autograd over the
    trainable parameters, averaged over DDP ranks, Gram matrix K = GGᵀ, combiner weights w,
    ``.grad`` = Gᵀw, optional gradient-norm clipping, optimizer and scheduler step. A combiner that
    needs no Gram (LS) takes one ordinary backward of Σ w_i ℓ_i instead. With
    ``gradient_scope='representation'`` (MGDA-UB style) or a list of parameter-name prefixes, K
    comes from the gradients w.r.t. that scope only, followed by one weighted backward. Steps
    with non-finite losses or gradients are skipped and counted; ``max_bad_steps`` consecutive
    ones stop the run.
    """

    def __init__(
        self,
        combiner: Combiner,
        preference: Sequence[float] | float,
        optimizer: OptimizerFactory | None = None,
        scheduler: Callable | None = None,
        gradient_clip_val: float | None = None,
        max_bad_steps: int = 10,
        gradient_scope: str | Sequence[str] = "all",
        num_objectives: int | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.combiner = combiner
        self.preference = as_preference(preference, num_objectives)
        self.optimizer_factory = optimizer or (lambda ps: torch.optim.AdamW(ps, lr=1e-5))
        self.scheduler_factory = scheduler
        if gradient_clip_val is not None and gradient_clip_val <= 0:
            raise ValueError(f"gradient_clip_val must be > 0 or null. Found {gradient_clip_val}")
        self.gradient_clip_val = gradient_clip_val
        if max_bad_steps < 1:
            raise ValueError(f"max_bad_steps must be >= 1. Found {max_bad_steps}")
        self.max_bad_steps = max_bad_steps
        if isinstance(gradient_scope, str):
            if gradient_scope not in ("all", "representation"):
                raise ValueError(
                    f"gradient_scope must be 'all', 'representation' or a list of parameter-name "
                    f"prefixes. Found {gradient_scope!r}"
                )
        else:
            gradient_scope = [str(p) for p in gradient_scope]
            if not gradient_scope:
                raise ValueError("gradient_scope: an empty list of parameter-name prefixes")
        self.gradient_scope = gradient_scope
        self._base_seed: int | None = None
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

    def on_fit_start(self):
        self._base_seed = torch.initial_seed()  # the run's seed (seed_everything), before reseeding
        if self.gradient_scope != "all":  # wrong scopes fail before the first step
            if len(self.member_parameters()) != 1:
                raise ConfigError(
                    "gradient_scope other than 'all' supports single models, not ensembles"
                )
            if self.gradient_scope != "representation":
                self.scope_parameters()
        precision = str(self.trainer.precision)
        if precision.startswith("16"):
            raise ValueError(
                f"trainer.precision={precision} is not supported: the Gram combiners' "
                "hand-written gradients bypass the loss scaler, and non-finite steps are skipped "
                "by the module, not the scaler. Use 32-true or bf16-mixed"
            )

    def configure_optimizers(self):
        params = [p for group in self.member_parameters() for p in group]
        opt = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return opt
        # the budget in optimizer steps, from max_steps or max_epochs × batches per epoch
        total = self.trainer.estimated_stepping_batches
        sched = self.scheduler_factory(opt, total_steps=total)
        # stepped by multi_objective_step once per optimizer step; Lightning only saves and
        # restores its state (manual optimisation)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

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

    def on_train_batch_start(self, batch, batch_idx):
        # Dropout (and any other global randomness) is reseeded from (run seed, epoch) at each
        # epoch's first batch, so a run resumed from an epoch-end checkpoint draws exactly the
        # numbers the uninterrupted run drew, whatever Lightning consumed while restoring (a
        # resumed run's first epoch does not even get on_train_epoch_start).
        if batch_idx != 0:
            return
        if self._base_seed is None:
            self._base_seed = torch.initial_seed()
        seed = (self._base_seed * 1_000_003 + self.current_epoch) % 2**32
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

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
        # decided on every rank's losses at once: ranks that disagreed about skipping would
        # fall out of step in their collective calls
        finite = all_reduce_mean(torch.isfinite(stacked.detach()).all().float().reshape(1))
        if float(finite) < 1.0:
            return self._bad_step(f"non-finite losses {stacked.detach().cpu().tolist()}")

        # the combiner sees global quantities on every rank: losses averaged over ranks here,
        # gradients / Gram reduced below, so all ranks solve the same problem
        global_losses = all_reduce_mean(stacked.detach())
        fgrads = self.criterion_grads(global_losses)
        rows = list(stacked.unbind(0))
        if fgrads is not None and not torch.isfinite(fgrads).all():
            return self._bad_step("a non-finite criterion gradient")
        exact = self.combiner.needs_gram and self.gradient_scope == "all"
        if exact:
            results = self._exact_directions(rows, global_losses, groups, fgrads)
        elif not self.combiner.needs_gram:
            results = [self.combiner(g, None, self.preference) for g in global_losses]
        else:
            results = self._scoped_weights(rows, global_losses, fgrads)
        if results is None:
            return self._bad_step("non-finite gradients (Gram matrix)")
        if not _finite_weights(results):
            return self._bad_step("non-finite combiner weights")
        if not exact:
            # one ordinary backward of the weighted sum (DDP reduces it as usual)
            self.manual_backward(
                sum((r.weights.to(row) * row).sum() for r, row in zip(results, rows))
            )
            if not all(
                torch.isfinite(p.grad).all() for g in groups for p in g if p.grad is not None
            ):
                return self._bad_step("non-finite gradients")

        self._consecutive_bad = 0
        if self.gradient_clip_val is not None:
            self.clip_gradients(
                opt, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )
        self._optimizer_step(opt)
        self.fallbacks += sum(r.fallback for r in results)
        self._log_step(global_losses, results)
        return results

    def _exact_directions(self, rows, global_losses, groups, fgrads):
        """Scope 'all': per-objective gradients over every trainable parameter (averaged over
        DDP ranks), Gram, weights, and .grad = Gᵀw. None when the Gram is not finite."""
        member_grads = []
        last = len(groups) - 1
        for j, (row, params) in enumerate(zip(rows, groups)):
            grads = objective_grads(row, params, keep_graph=j < last)
            all_reduce_grads(grads)
            member_grads.append(grads)
        results = []
        for j, grads in enumerate(member_grads):
            K = gram_matrix(grads)
            if not torch.isfinite(K).all():
                return None
            extra = {} if fgrads is None else {"criterion_grad": fgrads[j]}
            results.append(self.combiner(global_losses[j], K, self.preference, **extra))
        if _finite_weights(results):  # otherwise the caller skips the step
            for grads, params, res in zip(member_grads, groups, results):
                write_direction(grads, res.weights, params)
        return results

    def _scoped_weights(self, rows, global_losses, fgrads):
        """Scopes 'representation' and parameter subsets: the Gram matrix from gradients w.r.t.
        the scope only (cheap: the backward stops there), weights from the combiner; the caller
        then takes one weighted backward over all parameters."""
        (row,) = rows  # single models only: checked in on_fit_start
        if self.gradient_scope == "representation":
            feats = self.representation()
            grads = objective_grads(row, [feats], keep_graph=True)
            K = gram_matrix(grads)
            all_reduce_gram(K)  # features differ per rank: K of the global batch = Σ_r K_r / R²
        else:
            params = self.scope_parameters()
            grads = objective_grads(row, params, keep_graph=True)
            all_reduce_grads(grads)
            K = gram_matrix(grads)
        if not torch.isfinite(K).all():
            return None
        extra = {} if fgrads is None else {"criterion_grad": fgrads[0]}
        return [self.combiner(global_losses[0], K, self.preference, **extra)]

    def representation(self) -> torch.Tensor:
        """The shared representation of the current batch (B, d), for gradient_scope
        'representation'. Subclasses set ``self._representation`` in ``objectives``."""
        feats = getattr(self, "_representation", None)
        if feats is None:
            raise ConfigError(
                f"gradient_scope='representation' needs a module that exposes its features; "
                f"{type(self).__name__} does not"
            )
        return feats

    def scope_parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters whose names start with one of ``gradient_scope``'s prefixes."""
        prefixes = tuple(self.gradient_scope)
        params = [
            p for n, p in self.named_parameters() if p.requires_grad and n.startswith(prefixes)
        ]
        if not params:
            tops = sorted({n.split(".")[0] for n, _ in self.named_parameters()})
            raise ConfigError(
                f"gradient_scope {list(prefixes)} matches no trainable parameter; names start "
                f"with: {', '.join(tops)}"
            )
        return params

    def _optimizer_step(self, opt) -> None:
        """One optimizer step and one scheduler step: the budget (``trainer.max_steps``, which
        Lightning counts in optimizer steps), the schedule and the validation cadence all advance
        together, once per training batch."""
        opt.step()
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()

    def _bad_step(self, why: str):
        """A skipped step still takes its place in the budget and the schedule: the optimizer is
        stepped with every ``.grad`` cleared, which leaves parameters and moments untouched
        (torch optimizers skip parameters without a gradient), so step counts, learning rate
        and validation cadence stay aligned with the batches seen."""
        self.skipped_steps += 1
        self._consecutive_bad += 1
        rank_zero_warn(
            f"step {self.global_step}: skipped, {why} ({self.skipped_steps} skipped so far)"
        )
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self._optimizer_step(opt)
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


def _finite_weights(results) -> bool:
    return all(bool(torch.isfinite(r.weights).all()) for r in results)
