"""Fast Adaptive Multitask Optimization (FAMO; Liu, Liu, Jin, Stone & Liu, NeurIPS 2023)."""

from __future__ import annotations

import math

import numpy as np
import torch

from moo_lightning.combiners.base import Combiner, SolverError, _fmt

EPS = 1e-8  # added to ℓ − b before the logarithm (as in the official code and TorchJD)
BETAS = (0.9, 0.999)  # the logits' Adam (torch.optim.Adam's defaults, as in the paper's code)
ADAM_EPS = 1e-8


class FAMO(Combiner):
    """FAMO: the model descends c·Σ_i z_i log(ℓ_i − b_i + ε) with z = softmax(ξ), where ξ are
    logits kept as state, b = ``min_losses`` (lower bounds of the losses, default 0), ε = 1e-8 and
    c = (Σ_i z_i / (ℓ_i − b_i + ε))^{-1} held constant, so the weights

      w_i = c·z_i / (ℓ_i − b_i + ε)

    lie on the simplex (one ordinary backward of Σ w_i ℓ_i, no Gram matrix).

    After the optimizer step the module recomputes the same batch's losses ℓ⁺ and calls
    :meth:`after_step`: with δ_i = log(ℓ_i − b_i + ε) − log(ℓ⁺_i − b_i + ε) (each loss's log
    decrease), ξ takes one Adam step (lr ``lr``, L2 weight decay ``weight_decay``, betas (0.9,
    0.999), eps 1e-8) on the gradient J_softmax(ξ)ᵀδ = z ⊙ (δ − zᵀδ), as in the paper's Algorithm
    and TorchJD's ``FAMO.update``. Objectives whose log loss fell least gain weight.

    State (``state_dict``): ξ, Adam's moments and step count, and the last combine's losses, as
    plain floats; restored exactly. It changes only from the all-reduced losses, so every DDP
    rank holds the same logits. Every loss must exceed its bound b_i; otherwise the combine fails
    (SolverError). Ignores the preference and the gradients.
    """

    needs_gram = False
    name = "famo"
    reads_losses = True
    uses_preference = False
    needs_losses_after_step = True

    def __init__(
        self,
        lr: float = 0.025,
        weight_decay: float = 1e-3,
        min_losses=None,
        on_failure: str = "raise",
    ):
        super().__init__(on_failure)
        self.lr = self.check_number("lr", lr, 0.0)
        self.weight_decay = self.check_number("weight_decay", weight_decay, 0.0)
        if min_losses is not None:
            try:
                values = [float(v) for v in min_losses]
            except (TypeError, ValueError):
                values = None
            bad = values is None or isinstance(min_losses, str) or not values
            if bad or not all(math.isfinite(v) for v in values):
                raise ValueError(
                    "combiner.min_losses must be null (zeros) or a list of m finite numbers. "
                    f"Found {min_losses!r}"
                )
            min_losses = values
        self.min_losses = min_losses
        self._xi: np.ndarray | None = None
        self._m1: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._t = 0
        self._prev: np.ndarray | None = None

    def _bounds(self, m: int) -> np.ndarray:
        if self.min_losses is None:
            return np.zeros(m)
        if len(self.min_losses) != m:
            raise ValueError(
                f"combiner.min_losses must have one entry per objective ({m}). "
                f"Found {len(self.min_losses)}"
            )
        return np.asarray(self.min_losses, dtype=np.float64)

    def _shifted(self, losses: np.ndarray) -> np.ndarray:
        shifted = losses - self._bounds(losses.size) + EPS
        if np.any(shifted <= 0):
            raise SolverError(
                f"famo needs every loss above its bound (combiner.min_losses). Found losses "
                f"{_fmt(losses)}"
            )
        return shifted

    def _weights(self) -> np.ndarray:
        e = np.exp(self._xi - self._xi.max())
        return e / e.sum()

    def _combine(self, losses, gram, preference):
        m = losses.size
        if self._xi is None:
            self._xi, self._m1, self._m2 = np.zeros(m), np.zeros(m), np.zeros(m)
        elif self._xi.size != m:
            raise ValueError(
                f"famo was tracking {self._xi.size} objectives and now got {m}: "
                "the number of objectives must not change during a run"
            )
        shifted = self._shifted(losses)
        z = self._weights()
        q = z / shifted
        w = q / q.sum()
        self._prev = losses.copy()
        return w, {"max_task_weight": float(z.max()), "min_task_weight": float(z.min())}

    def after_step(self, losses: torch.Tensor) -> None:
        if self._prev is None:
            raise ValueError("famo.after_step needs a combine on the same batch first")
        new = self._check_losses(losses)
        if new.size != self._prev.size:
            raise ValueError(f"famo.after_step got {new.size} losses, expected {self._prev.size}")
        delta = np.log(self._shifted(self._prev)) - np.log(self._shifted(new))
        z = self._weights()
        grad = z * (delta - z @ delta) + self.weight_decay * self._xi
        b1, b2 = BETAS
        self._t += 1
        self._m1 = b1 * self._m1 + (1 - b1) * grad
        self._m2 = b2 * self._m2 + (1 - b2) * grad * grad
        step = self.lr / (1 - b1**self._t)
        denom = np.sqrt(self._m2) / math.sqrt(1 - b2**self._t) + ADAM_EPS
        self._xi = self._xi - step * self._m1 / denom

    def state_dict(self) -> dict:
        def plain(a):
            return None if a is None else [float(v) for v in a]

        return {
            "logits": plain(self._xi),
            "adam_m": plain(self._m1),
            "adam_v": plain(self._m2),
            "adam_t": int(self._t),
            "prev_losses": plain(self._prev),
        }

    def load_state_dict(self, state: dict) -> None:
        keys = {"logits", "adam_m", "adam_v", "adam_t", "prev_losses"}
        if set(state) != keys:
            raise ValueError(
                f"famo state must have the keys {sorted(keys)}. Found {sorted(state)}: "
                "the checkpoint was made with another combiner"
            )

        def arr(v):
            return None if v is None else np.asarray(v, dtype=np.float64)

        self._xi, self._m1, self._m2 = (
            arr(state["logits"]),
            arr(state["adam_m"]),
            arr(state["adam_v"]),
        )
        self._t = int(state["adam_t"])
        self._prev = arr(state["prev_losses"])
