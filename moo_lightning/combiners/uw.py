"""Uncertainty weighting (UW; Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

import numpy as np
import torch

from moo_lightning.combiners.base import Combiner


class UncertaintyWeighting(Combiner):
    """UW: minimise Σ_i ( ℓ_i / (2e^{s_i}) + s_i / 2 ) jointly over the model and the learnable
    log-variances s (s_i = log σ_i², TorchJD's convention; init 0, so the weights start at 1/2).

    Weights w_i = 1 / (2e^{s_i}) = ∂/∂ℓ_i of that objective: the module takes one ordinary backward
    of Σ w_i ℓ_i (no Gram matrix). s is a float32 ``torch.nn.Parameter`` returned by
    :meth:`parameters`; the module hands it to the optimizer. At every combine the combiner *sets*
    ``s.grad`` = ∂/∂s of the objective = 1/2 − ℓ_i/(2e^{s_i}), computed from the losses it is
    given (all-reduced over DDP ranks), so every rank writes the same gradient; it is overwritten,
    not accumulated (with gradient accumulation, the last micro-batch's losses decide it).

    At a fixed loss the optimum is e^{s_i} = ℓ_i, i.e. w_i = 1/(2ℓ_i): UW drifts towards
    scale-invariant weights. ``num_objectives`` (m) creates s at construction, so the optimizer can
    be given it before the first step; without it s is created at the first combine and
    :meth:`parameters` refuses to answer before then. ``lr``: the learning rate of s (its own
    param group of the model's optimizer, scheduled like the rest); None: the optimizer's. A
    fine-tuning rate (1e-5) moves s by about 1e-3 in a few hundred steps, so UW then stays at
    equal weights. Ignores the preference and the gradients.
    """

    needs_gram = False
    name = "uw"
    reads_losses = True
    uses_preference = False
    weights_on_simplex = False

    def __init__(
        self, num_objectives: int | None = None, on_failure: str = "raise", lr: float | None = None
    ):
        super().__init__(on_failure)
        if lr is not None:
            lr = self.check_number("lr", lr, 0.0, strict=True)
        self.parameter_lr = lr
        if (
            num_objectives is not None
            and (isinstance(num_objectives, bool) or not isinstance(num_objectives, int))
            or (num_objectives is not None and num_objectives < 1)
        ):
            raise ValueError(
                f"combiner.num_objectives must be null or an integer >= 1. Found {num_objectives!r}"
            )
        self.num_objectives = num_objectives
        self._log_var = None if num_objectives is None else self._new(num_objectives)

    @staticmethod
    def _new(m: int) -> torch.nn.Parameter:
        return torch.nn.Parameter(torch.zeros(m, dtype=torch.float32))

    def prepare(self, num_objectives: int) -> None:
        """The module gives m before building the optimizer: s is created here unless
        ``num_objectives`` already made it (then the two must agree)."""
        if self._log_var is None:
            self.num_objectives = int(num_objectives)
            self._log_var = self._new(self.num_objectives)
        elif self._log_var.numel() != num_objectives:
            raise ValueError(
                f"combiner.num_objectives={self._log_var.numel()} but the task has "
                f"{num_objectives} objectives"
            )

    def parameters(self) -> list:
        if self._log_var is None:
            raise ValueError(
                "combiner.num_objectives must be set for uw (e.g. combiner.num_objectives=2): "
                "the optimizer needs the log-variances before the first step"
            )
        return [self._log_var]

    def _combine(self, losses, gram, preference):
        m = losses.size
        if self._log_var is None:
            self._log_var = self._new(m)
        if self._log_var.numel() != m:
            raise ValueError(
                f"uw has {self._log_var.numel()} log-variances (combiner.num_objectives) "
                f"but got {m} losses"
            )
        s = self._log_var.detach().to("cpu", torch.float64).numpy()
        w = 0.5 * np.exp(-s)
        grad = 0.5 - losses * w  # ∂/∂s_i [ℓ_i e^{-s_i}/2 + s_i/2]
        p = self._log_var
        p.grad = torch.as_tensor(grad, dtype=p.dtype).to(p.device)
        return w, {"max_log_var": float(s.max()), "min_log_var": float(s.min())}

    def state_dict(self) -> dict:
        # the optimizer and the module carry s too; kept here so a combiner alone round-trips
        return {} if self._log_var is None else {"log_var": self._log_var.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if set(state) != {"log_var"}:
            raise ValueError(
                f"uw state must have the key 'log_var'. Found {sorted(state)}: "
                "the checkpoint was made with another combiner"
            )
        value = torch.as_tensor(state["log_var"])
        if self._log_var is None:
            self._log_var = self._new(value.numel())
        if value.shape != self._log_var.shape:
            raise ValueError(
                f"uw state has {value.numel()} log-variances, this run {self._log_var.numel()}"
            )
        with torch.no_grad():  # in place: the optimizer keeps its reference to the parameter
            self._log_var.copy_(value.to(self._log_var.device, self._log_var.dtype))
