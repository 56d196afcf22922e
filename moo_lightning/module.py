"""The multi-objective LightningModule: losses (m,) -> one optimizer step steered by a combiner."""

from __future__ import annotations

import copy
import logging
import math
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from moo_lightning.batches import step_seed, warn_if_epoch_never_set, warn_if_unresumable
from moo_lightning.combiners.base import Combined, Combiner, SolverError, as_preference
from moo_lightning.combiners.criteria import ParameterCriterion
from moo_lightning.errors import ConfigError, NonFiniteError
from moo_lightning.gradients import (
    all_reduce_grads,
    all_reduce_gram,
    all_reduce_mean,
    gram_matrix,
    leaves_behind,
    objective_grads,
    write_direction,
)
from moo_lightning.step import (
    CombinerSchedule,
    RowCombiners,
    combine_rows,
    warn_scale_dependence,
)

# Neither says anything about a run, and a user cannot act on either: Lightning's advertisement
# for its cloud logger at every fit, and a deprecation warning Lightning raises inside itself.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
    lambda record: not str(record.msg).startswith("💡 Tip")
)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")

OptimizerFactory = Callable[[Sequence[torch.nn.Parameter]], torch.optim.Optimizer]


@runtime_checkable
class InformsModule(Protocol):
    """A part built before the module (the data, an encoder) that gives the module's
    constructor what it needs from it: the number of classes, the encoder itself."""

    def module_arguments(self) -> dict: ...


@runtime_checkable
class InformsData(Protocol):
    """A part built before the data (an encoder) that gives the data module's constructor what
    it needs from it: the tokenizer."""

    def data_arguments(self) -> dict: ...


@dataclass(frozen=True)
class GradientScope:
    """Which gradients the combiner's Gram matrix is built from.

    ``all``: every trainable parameter (exact; the direction is Gᵀw). ``shared``: the
    parameters the module's shared features (:meth:`MultiObjectiveModule.representation`) are
    computed from build the Gram matrix and move along Σ w_i ∇ℓ_i; the parameters after the
    features (the tasks' heads) take Σ_i ∇ℓ_i, unweighted, so each head follows its own loss:
    the multi-task formulation of Sener & Koltun (2018), as TorchJD's ``mtl_backward``.
    ``representation``: the shared features of the batch (MGDA-UB, Sener & Koltun 2018), then
    one weighted backward. A list of parameter-name prefixes: those parameters only, then one
    weighted backward. Parsed when the module is built; prefix lists are resolved once, at fit
    start."""

    kind: str  # "all" | "shared" | "representation" | "parameters"
    prefixes: tuple[str, ...] = ()
    parameters: tuple[torch.nn.Parameter, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def parse(cls, spec: str | Sequence[str]) -> GradientScope:
        if isinstance(spec, str):
            if spec not in ("all", "shared", "representation"):
                raise ValueError(
                    f"gradient_scope must be 'all', 'shared', 'representation' or a list of "
                    f"parameter-name prefixes. Found {spec!r}"
                )
            return cls(spec)
        prefixes = tuple(str(p) for p in spec)
        if not prefixes:
            raise ValueError("gradient_scope: an empty list of parameter-name prefixes")
        return cls("parameters", prefixes)

    @property
    def label(self) -> str:
        """The scope as it is written on the command line: ``shared``, ``[encoder,pooler]``."""
        return f"[{','.join(self.prefixes)}]" if self.kind == "parameters" else self.kind

    @property
    def exact(self) -> bool:
        """Every parameter moves along Gᵀw (the scope parameter criteria need)."""
        return self.kind == "all"

    @property
    def per_objective(self) -> bool:
        """The step takes per-objective gradients of every trainable parameter."""
        return self.kind in ("all", "shared")

    def resolve(self, module: torch.nn.Module) -> GradientScope:
        """This scope with its parameters found in ``module`` (prefix lists only)."""
        if self.kind != "parameters":
            return self
        named = list(module.named_parameters())
        params = tuple(p for n, p in named if p.requires_grad and n.startswith(self.prefixes))
        if not params:
            tops = sorted({n.split(".")[0] for n, _ in named})
            raise ConfigError(
                f"gradient_scope {list(self.prefixes)} matches no trainable parameter; names "
                f"start with: {', '.join(tops)}"
            )
        return GradientScope(self.kind, self.prefixes, params)


def run_preference(preference, m: int | None, combiner: Combiner) -> np.ndarray:
    """The preference the module's rows follow, checked for ``m`` objectives (None: as many as
    it has). A combiner that ignores the preference (MGDA, CAGrad, UW, ...) does not demand one
    that fits m: a value with another number of entries (train.yaml's two-entry default on a
    task of three objectives) gives way to the uniform preference 1/m."""
    if combiner.uses_preference or m is None:
        return as_preference(preference, m)
    if np.ndim(preference) == 0 and m != 2:  # one number is a pair only for two objectives
        preference = np.atleast_1d(np.asarray(preference, dtype=np.float64))
    given = as_preference(preference)  # a malformed value is refused whatever the combiner
    return given if given.size == m else np.full(m, 1.0 / m)


class MultiObjectiveModule(L.LightningModule):
    """One model trained on a loss vector with manual optimisation. Subclasses implement
    ``objectives(batch) -> losses (m,)``; ``training_step`` takes one step from them.

    One step (scope ``all``, exact): per-objective gradients by autograd over the trainable
    parameters, averaged over DDP ranks, Gram matrix K = GGᵀ, combiner weights w, ``.grad`` =
    Gᵀw, optional gradient-norm clipping, one optimizer and one scheduler step. A combiner that
    needs no Gram (LS) takes one ordinary backward of Σ w_i ℓ_i instead. Scope ``shared``
    builds K from the shared trunk's gradients and gives each head its own loss's gradient
    (every combiner, LS too); ``representation`` and prefix lists (:class:`GradientScope`)
    build K from fewer gradients, then take that weighted backward.
    Steps with non-finite losses, gradients or weights are skipped and counted;
    ``max_bad_steps`` consecutive ones stop the run. Ensembles: :mod:`moo_lightning.ensemble`.
    """

    # the record's entries the end-of-run summary shows (numbers only), in this order
    headline_metrics: tuple[str, ...] = ()
    # whether larger is better for the metrics the module logs (fnmatch patterns, first match
    # wins): what early stopping's ``mode: auto`` follows. A module logging other metrics
    # extends it (the hypervolume of losses, val/hv_loss, grows as the losses fall)
    larger_is_better: tuple[tuple[str, bool], ...] = (
        ("*/acc*", True),
        ("*/hv*", True),
        ("*/loss*", False),
        ("*/error*", False),
        ("*/err_*", False),
        ("*/mse*", False),
        ("*/mae*", False),
    )

    @classmethod
    def monitor_mode(cls, metric: str) -> str | None:
        """``max`` or ``min``: how early stopping (or a checkpoint) follows ``metric``; None when
        the module does not say (``larger_is_better``)."""
        from fnmatch import fnmatchcase

        for pattern, larger in cls.larger_is_better:
            if fnmatchcase(metric, pattern):
                return "max" if larger else "min"
        return None

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
        self.preference = run_preference(preference, num_objectives, combiner)
        combiner.prepare(self.preference.size)  # combiners sized by m (UW) before the optimizer
        self.optimizer_factory = optimizer or (lambda ps: torch.optim.AdamW(ps, lr=1e-5))
        self.scheduler_factory = scheduler
        if gradient_clip_val is not None and not (
            isinstance(gradient_clip_val, int | float) and 0 < gradient_clip_val < math.inf
        ):
            raise ValueError(
                f"module.gradient_clip_val must be a finite number > 0 or null. "
                f"Found {gradient_clip_val!r}"
            )
        self.gradient_clip_val = gradient_clip_val
        if (
            isinstance(max_bad_steps, bool)
            or not isinstance(max_bad_steps, int)
            or max_bad_steps < 1
        ):
            raise ValueError(
                f"module.max_bad_steps must be an integer >= 1. Found {max_bad_steps!r}"
            )
        self.max_bad_steps = max_bad_steps
        self.scope = GradientScope.parse(gradient_scope)
        self._shared: list[bool] = []  # shared scope: the parameters the features depend on
        self._shared_reported = False
        self._base_seed: int | None = None
        self.schedule = CombinerSchedule()  # no warm-up: the main combiner from the first step
        self._row_combiners: RowCombiners | None = None
        self._used_combiners: list[Combiner] = []
        self.fallbacks = 0
        self.recoveries = 0  # solver failures solved another way (see Combined.recovered)
        self.skipped_steps = 0
        self._consecutive_bad = 0

    # --- what subclasses provide -------------------------------------------------------------

    def objectives(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def representation(self) -> torch.Tensor:
        """The shared representation of the current batch (B, d), for gradient_scope
        'representation' and 'shared'. Subclasses set ``self._representation`` in
        ``objectives``."""
        feats = getattr(self, "_representation", None)
        if feats is None:
            raise ConfigError(
                f"gradient_scope={self.scope.kind!r} needs a module that exposes its shared "
                f"features (self._representation, set in objectives); {type(self).__name__} "
                "does not"
            )
        return feats

    def export(self, run_dir) -> dict:
        """The task's entries for the run's metrics.json (``RunRecord.task_metrics``; the
        record's own fields cannot be replaced) and files in ``run_dir``, once fit and test are
        done; on rank 0 only."""
        return {}

    def validation_record(self) -> dict:
        """The headline validation metrics from the module's own (checkpointed) state, for the
        record of a resumed run whose fit had no validation left to log. Empty by default."""
        return {}

    def test_results(self) -> dict:
        """The last test's results beyond the logged scalars (per-member losses, ...), as plain
        numbers and lists, writing nothing: what ``moo-evaluate`` records and compares."""
        return {}

    # --- Lightning hooks ------------------------------------------------------------------------

    def on_fit_start(self):
        self._base_seed = torch.initial_seed()  # the run's seed (seed_everything), before reseeding
        self.scope = self.scope.resolve(self)  # a wrong scope fails before the first step
        # a scale-dependent combiner (Nash-MTL, FairGrad, PNG with e > 0) on the features or a
        # few parameters computes its weights from a Gram of another scale: said before training
        warn_scale_dependence(self.combiner, self.scope)
        # combiners' randomness: from (run seed, global step), the same on every rank and resume
        self.row_combiners.set_seed(self._base_seed)
        if self.schedule.warmup is not None:
            self.schedule.warmup.seed = int(self._base_seed)
        if not self.row_combiners.resumable and self._resumes_or_saves_state():
            raise ConfigError(
                f"combiner {self.combiner.name!r} keeps state that cannot be checkpointed, so a "
                "run with it cannot be resumed exactly: use callbacks=none (no resume "
                "checkpoint) and no ckpt_path"
            )
        precision = str(self.trainer.precision)
        if precision.startswith("16"):
            raise ValueError(
                f"trainer.precision={precision} is not supported: the Gram combiners' "
                "hand-written gradients bypass the loss scaler, and non-finite steps are skipped "
                "by the module, not the scaler. Use 32-true or bf16-mixed"
            )

    def _resumes_or_saves_state(self) -> bool:
        """Whether this fit resumes from a checkpoint or writes resume checkpoints."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        trainer = self.trainer
        saves_last = any(isinstance(c, ModelCheckpoint) and c.save_last for c in trainer.callbacks)
        return bool(trainer.ckpt_path) or saves_last

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        opt = self.optimizer_factory(self.trainable_parameters())
        learnable = self.row_combiners.parameters()
        for p in learnable:
            # each process its own copy: ddp_spawn hands tensors to the ranks in shared memory,
            # and the module's parameters are the only ones it copies back to private storage
            p.data = p.data.clone()
        if learnable:  # the combiner's own weights (UW) step with the model's optimizer
            group = {"params": learnable}
            if self.row_combiners.parameter_lr() is not None:  # combiner.lr: their own rate
                group["lr"] = self.row_combiners.parameter_lr()
            if "weight_decay" in opt.defaults:
                group["weight_decay"] = 0.0  # a decay would pull UW's log-variances towards 0
            opt.add_param_group(group)
        if self.scheduler_factory is None:
            return opt
        # the budget in optimizer steps, from max_steps or max_epochs × batches per epoch
        total = self.trainer.estimated_stepping_batches
        sched = self.scheduler_factory(opt, total_steps=total)
        # stepped by the module once per optimizer step; Lightning only saves and restores its
        # state (manual optimisation)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch, batch_idx):
        results = self.multi_objective_step(self.objectives(batch))
        self.after_step(batch, results)

    def on_train_start(self):
        # a resumed run repeats the uninterrupted run's batches only if the training loader can
        # put its order back (the library's sampler can, a DataLoader(shuffle=True) cannot):
        # said once, now that the loader exists, before the first resumed step
        if self.trainer.ckpt_path and self.trainer.is_global_zero:
            warn_if_unresumable(self.trainer.train_dataloader)
        if self.trainer.is_global_zero:
            warn_if_epoch_never_set(self.trainer.train_dataloader)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["moo_counters"] = {
            "fallbacks": self.fallbacks,
            "recoveries": self.recoveries,
            "skipped_steps": self.skipped_steps,
            "consecutive_bad": self._consecutive_bad,
        }
        # a stateful combiner's state (loss history, warm start, learnable weights, ...): a
        # resumed run continues with exactly the state the interrupted one had
        checkpoint["combiner_state"] = self.row_combiners.state_dict()

    def on_load_checkpoint(self, checkpoint):
        counters = checkpoint.get("moo_counters", {})
        self.fallbacks = counters.get("fallbacks", 0)
        self.recoveries = counters.get("recoveries", 0)
        self.skipped_steps = counters.get("skipped_steps", 0)
        self._consecutive_bad = counters.get("consecutive_bad", 0)
        if "combiner_state" in checkpoint or "moo_counters" in checkpoint:
            try:
                self.row_combiners.load_state_dict(checkpoint.get("combiner_state"))
            except ValueError as err:
                raise ConfigError(f"ckpt_path: {err}") from None

    def on_train_batch_start(self, batch, batch_idx):
        # Dropout (and any other global randomness of a step) is reseeded from (run seed, step)
        # before every batch, so a run resumed from any checkpoint (an epoch's end, or between
        # two validations of an epoch) draws exactly the numbers the uninterrupted run drew,
        # whatever Lightning or validation consumed in between, and every DDP rank draws the
        # same stream.
        if self._base_seed is None:
            self._base_seed = torch.initial_seed()
        seed = step_seed(self._base_seed, self.trainer.global_step)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    # --- the step -------------------------------------------------------------------------------
    #
    # One step combines a loss matrix (N, m) row by row: N = 1 for a single model (``objectives``
    # returns a vector (m,)), N members for an EnsembleModule. Only how the rows' gradients are
    # taken, reduced to Gram matrices and written back differs between the two (``_row_grads``,
    # ``_row_grams``, ``_write_rows``); the combining, the checks, skipping and logging are one.

    @property
    def num_rows(self) -> int:
        """Rows of the loss matrix: 1 for a single model."""
        return 1

    @property
    def row_combiners(self) -> RowCombiners:
        """The main combiner of each row (copies with their own state for stateful combiners)."""
        if self._row_combiners is None or self._row_combiners.template is not self.combiner:
            self._row_combiners = RowCombiners(self.combiner, self.num_rows)
        return self._row_combiners

    @property
    def row_preferences(self) -> np.ndarray:
        """The preference of each row (N, m)."""
        return self.preference[None]

    @property
    def recorded_preference(self) -> list[float] | None:
        """The one preference this run followed, as metrics.json and the W&B label ``r`` record
        it; None when the combiner ignores the preference (CAGrad, PCGrad, MGDA, ...)."""
        if not self.combiner.uses_preference:
            return None
        return [float(v) for v in self.preference]

    @property
    def method_name(self) -> str:
        """What this run is called in tables when no ``method`` label is set: the combiner."""
        return self.combiner.name

    def coupling_grads(self, losses: torch.Tensor) -> torch.Tensor | None:
        """∂F/∂ℓ (N, m) of a criterion coupling the rows (ensembles); None: none."""
        return None

    def loss_rows(self, losses: torch.Tensor) -> torch.Tensor:
        """The objectives' output as a loss matrix (N, m); a single model gives a vector (m,)."""
        if losses.dim() != 1:
            raise ValueError(
                f"objectives must return a loss vector (m,). Found shape {tuple(losses.shape)} "
                "(ensembles: moo_lightning.ensemble.EnsembleModule)"
            )
        return losses[None]

    def multi_objective_step(self, losses: torch.Tensor) -> list[Combined] | None:
        """One optimizer step from the losses ((m,) for one model, (N, m) for N members).
        Returns every row's combiner result, or None when the step was skipped."""
        rows = self.loss_rows(losses)
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        global_rows = self._global_losses(rows)
        if global_rows is None:
            return self._bad_step(f"non-finite losses {losses.detach().cpu().tolist()}")
        # the combiners' state as it was: a skipped step must leave it untouched (a GradVac EMA
        # or a DWA history updated by a step that is then skipped would not match a run that
        # never saw the batch)
        saved = copy.deepcopy(self.row_combiners.state_dict())
        results = self.write_gradients(rows, global_rows)
        if isinstance(results, str):
            if saved is not None:
                self.row_combiners.load_state_dict(saved)
            return self._bad_step(results)
        self._finish_step(opt, global_rows, results)
        return results

    def after_step(self, batch, results: list[Combined] | None) -> None:
        """Combiners that update from the same batch's losses after the optimizer step (FAMO)
        get them: recomputed without gradients and averaged over DDP ranks."""
        used = self._used_combiners
        if results is None or not any(c.needs_losses_after_step for c in used):
            return
        with torch.no_grad():
            rows = self.loss_rows(self.objectives(batch))
        global_rows = self._global_losses(rows)
        if global_rows is None:
            return  # the next step is skipped or stops the run; no update from non-finite losses
        for n, c in enumerate(used):
            if not c.needs_losses_after_step or results[n].fallback:
                continue  # a row whose combine fell back has nothing to update from
            try:
                c.after_step(global_rows[n])
            except SolverError as err:
                if c.on_failure == "raise":
                    raise
                self.fallbacks += 1  # counted like a failed combine; the state is left as it was
                rank_zero_warn(f"step {self.global_step}: {c.name} after the step: {err}")

    def _global_losses(self, losses: torch.Tensor) -> torch.Tensor | None:
        """The losses averaged over DDP ranks, or None when any rank's are not finite (decided
        on every rank's losses at once: ranks that disagreed about skipping would fall out of
        step in their collective calls)."""
        finite = all_reduce_mean(torch.isfinite(losses.detach()).all().float().reshape(1))
        if float(finite) < 1.0:
            return None
        return all_reduce_mean(losses.detach())

    def write_gradients(
        self, rows: torch.Tensor, global_rows: torch.Tensor
    ) -> list[Combined] | str:
        """Every row's combiner weights from ``global_rows`` (N, m) (and the Gram matrices of the
        scope's gradients), and ``.grad`` of the trainable parameters set to the combined
        directions. Returns the results, or why the step must be skipped."""
        params = self.trainable_parameters()
        step = int(self.global_step)
        combiners = self.schedule.combiners(step, self.row_combiners)
        self._used_combiners = combiners
        criterion = self.parameter_criterion()
        if criterion is not None:
            return self._write_with_parameter_criterion(rows, global_rows, combiners, criterion)
        coupling = None
        if any(c.uses_criterion_grad for c in combiners):
            coupling = self.coupling_grads(global_rows)
            if coupling is not None and not torch.isfinite(coupling).all():
                return "a non-finite criterion gradient"
        prefs = self.row_preferences
        needs_gram = any(c.needs_gram for c in combiners)
        # the shared scope treats task-specific parameters apart for every combiner, LS too
        if (needs_gram or self.scope.kind == "shared") and self.scope.per_objective:
            grads = self._row_grads(rows, params)
            all_reduce_grads(grads)  # the combiners see the global batch's gradients
            K = self._row_grams(grads)
            if not torch.isfinite(K).all():
                return "non-finite gradients (Gram matrix)"
            if not self._heads_finite(grads):
                return "non-finite gradients (the heads')"
            results = combine_rows(combiners, global_rows, K, prefs, coupling, step)
            W = torch.stack([r.weights for r in results])
            if not torch.isfinite(W).all():
                return "non-finite combiner weights"
            self._write_rows(grads, W, params)
            return results
        K = self._scoped_gram(rows[0])[None] if needs_gram else None
        if K is not None and not torch.isfinite(K).all():
            return "non-finite gradients (Gram matrix)"
        results = combine_rows(combiners, global_rows, K, prefs, coupling, step)
        W = torch.stack([r.weights for r in results])
        if not torch.isfinite(W).all():
            return "non-finite combiner weights"
        # one ordinary backward of the weighted sum (DDP reduces it as usual)
        self.manual_backward((W.to(rows) * rows).sum())
        if not all(torch.isfinite(p.grad).all() for p in params if p.grad is not None):
            return "non-finite gradients"
        return results

    # --- a criterion of the parameters (PNG's general case) -------------------------------------

    def parameter_criterion(self) -> torch.Tensor | None:
        """F(θ) on the current batch when the criterion depends on the parameters directly
        (features, an adversary's view, a fairness gap): a scalar tensor with a graph to the
        trainable parameters, which ``objectives`` leaves in ``self._parameter_criterion``.
        None (the default): combiners steer by their own criterion of the losses, if any.

        With a combiner that steers by a criterion (PNG) the step takes one more backward: the
        Gram of the m objectives' and F's gradients gives K and the inner products ∇ℓ_iᵀ∇F, the
        combiner solves its dual on them, and the direction is ∇F + Σ λ_i ∇ℓ_i. With any other
        combiner F is a regulariser added with weight ``criterion_weight`` (0: ignored)."""
        return getattr(self, "_parameter_criterion", None)

    #: the weight of a parameter criterion F(θ) added to the combined loss when the combiner does
    #: not steer by a criterion (JiGen + adversarial regulariser); PNG ignores it
    criterion_weight: float = 0.0

    def _write_with_parameter_criterion(self, rows, global_rows, combiners, criterion):
        if self.num_rows != 1 or not self.scope.exact:
            raise ConfigError(
                "a criterion of the parameters needs a single model and gradient_scope='all'"
            )
        params = self.trainable_parameters()
        step = int(self.global_step)
        criterion = criterion.reshape(())
        self._criterion_value = float(all_reduce_mean(criterion.detach().reshape(1)))
        steer = combiners[0].uses_criterion_grad
        m = rows.shape[1]
        if not (steer or combiners[0].needs_gram):
            # a loss-only combiner (LS): one backward of Σ w_i ℓ_i + β·F
            results = combine_rows(combiners, global_rows, None, self.row_preferences, None, step)
            W = results[0].weights
            if not torch.isfinite(W).all():
                return "non-finite combiner weights"
            loss = (W.to(rows) * rows[0]).sum()
            if self.criterion_weight:
                loss = loss + self.criterion_weight * criterion
            self.manual_backward(loss)
            if not all(torch.isfinite(p.grad).all() for p in params if p.grad is not None):
                return "non-finite gradients"
            return results
        # m + 1 gradients: the objectives' and F's, reduced over ranks like any row of G
        grads = objective_grads(torch.cat([rows[0], criterion.reshape(1)]), params)
        all_reduce_grads(grads)
        full = gram_matrix(grads)
        if not torch.isfinite(full).all():
            return "non-finite gradients (Gram matrix)"
        K = full[:m, :m][None]
        given = None
        if steer:
            cross = full[:m, m].numpy()
            given = [ParameterCriterion(cross, float(full[m, m]))]
        results = combine_rows(combiners, global_rows, K, self.row_preferences, given, step)
        w = results[0].weights
        extra = results[0].criterion_weight if steer else float(self.criterion_weight)
        weights = torch.cat([w, w.new_tensor([extra])])
        if not torch.isfinite(weights).all():
            return "non-finite combiner weights"
        write_direction(grads, weights, params)
        return results

    def _grad_losses(self, rows: torch.Tensor) -> torch.Tensor:
        """The m losses whose gradients hold every row's per-objective gradients."""
        return rows[0]

    def _row_grads(self, rows: torch.Tensor, params) -> list[list[torch.Tensor]]:
        """Per-objective gradients of the trainable parameters: grads[i][k] = ∇_{p_k} ℓ_i.
        With the shared scope, also which parameters the features are computed from."""
        if self.scope.kind == "shared":
            self._shared = self._shared_mask(params)  # before the backward frees the graph
        return objective_grads(self._grad_losses(rows), params)

    def _shared_mask(self, params) -> list[bool]:
        """For each trainable parameter: whether the shared features depend on it (the trunk);
        the others belong to the tasks' heads."""
        behind = leaves_behind(self.representation())
        mask = [id(p) in behind for p in params]
        if not any(mask):
            raise ConfigError(
                "gradient_scope='shared': the features depend on no trainable parameter (a "
                "frozen encoder?), so nothing is shared; use gradient_scope='all'"
            )
        if not self._shared_reported:
            rank_zero_info(
                f"gradient_scope=shared: {sum(mask)} parameter tensors are shared (the Gram "
                f"matrix, the combined direction), {len(mask) - sum(mask)} belong to the tasks' "
                "heads and take their own losses' gradients"
            )
            self._shared_reported = True
        return mask

    def _row_grams(self, grads) -> torch.Tensor:
        """The Gram matrix of each row (N, m, m); the shared parameters' only with that scope."""
        if self.scope.kind == "shared":
            grads = [[gk for gk, s in zip(g, self._shared) if s] for g in grads]
        return self._grams(grads)

    def _heads_finite(self, grads) -> bool:
        """With the shared scope, whether the heads' gradients (outside the Gram matrix, which
        checks the trunk's) are finite; True otherwise."""
        weighted = self._weighted()
        if weighted is None:
            return True
        heads = [k for k, w in enumerate(weighted) if not w]
        return all(bool(torch.isfinite(g[k]).all()) for g in grads for k in heads)

    def _grams(self, grads) -> torch.Tensor:
        return gram_matrix(grads)[None]

    def _write_rows(self, grads, weights: torch.Tensor, params) -> None:
        """``.grad`` = each row's direction Σ_i w_ni ∇ℓ_ni (with the shared scope, the heads
        take their own losses' gradients)."""
        write_direction(grads, weights[0], params, self._weighted())

    def _weighted(self) -> list[bool] | None:
        """Which parameters move along the combined direction (None: all)."""
        return self._shared if self.scope.kind == "shared" else None

    def _scoped_gram(self, losses: torch.Tensor) -> torch.Tensor:
        """K from the gradients w.r.t. the scope only (cheap: the backward stops there); the
        graph is kept for the weighted backward that follows."""
        if self.scope.kind == "representation":
            grads = objective_grads(losses, [self.representation()], keep_graph=True)
            K = gram_matrix(grads)
            all_reduce_gram(K)  # features differ per rank: K of the global batch = Σ_r K_r / R²
            return K
        grads = objective_grads(losses, list(self.scope.parameters), keep_graph=True)
        all_reduce_grads(grads)
        return gram_matrix(grads)

    def _finish_step(self, opt, global_losses: torch.Tensor, results: list[Combined]) -> None:
        """Clip, step optimizer and schedule, count and log a step that was taken."""
        self._consecutive_bad = 0
        if self.gradient_clip_val is not None:
            self.clip(opt)
        self._optimizer_step(opt)
        self.fallbacks += sum(r.fallback for r in results)
        self.recoveries += sum(r.recovered for r in results)
        self._log_step(global_losses, results)

    def clip(self, opt) -> None:
        """Clip the direction to norm ``gradient_clip_val``: the model's parameters only (the
        combiner's own weights, UW's log-variances, are set aside while clipping)."""
        learnable = self.row_combiners.parameters()
        aside = [p.grad for p in learnable]
        for p in learnable:
            p.grad = None  # clipping skips parameters without a gradient
        self.clip_gradients(
            opt, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
        )
        for p, g in zip(learnable, aside):
            p.grad = g

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
        if self.parameter_criterion() is not None:  # F(θ) on the global batch
            logs["train/criterion"] = self._criterion_value
        logs["train/combiner/fallbacks"] = float(self.fallbacks)
        logs["train/combiner/recoveries"] = float(self.recoveries)
        logs["train/skipped_steps"] = float(self.skipped_steps)
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=1)
