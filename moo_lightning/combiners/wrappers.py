"""Combiners that wrap another combiner: CR-MOGM (weight smoothing) and the log-loss Gram
transform (LOG_MGDA, LOG_CAGrad, LOG_IMTLG, ... of the FAMO paper)."""

from __future__ import annotations

import numpy as np

from moo_lightning.combiners.base import Combiner, SolverError


class _Wrapper(Combiner):
    """A combiner around an ``inner`` one (a config of conf/combiner/inner/). The inner combiner's
    seed, step, ``prepare``, ``parameters`` and ``after_step`` are forwarded; its failures
    (SolverError) are handled by the wrapper's ``on_failure`` (the inner one's is not used)."""

    def __init__(self, inner: Combiner, on_failure: str = "raise"):
        super().__init__(on_failure)
        if not isinstance(inner, Combiner):
            raise ValueError(
                f"combiner.inner must be a combiner (choose one with combiner/inner=<name>). "
                f"Found {type(inner).__name__}"
            )
        self.inner = inner
        self._seed = 0
        self._row = 0

    # --- forwarded to the inner combiner ----------------------------------------------------

    @property
    def seed(self) -> int:  # the module sets the run seed here; the inner one draws with it
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = value
        self.inner.seed = value

    @property
    def row(self) -> int:  # the ensemble member: the inner one draws its own stream for it
        return self._row

    @row.setter
    def row(self, value: int) -> None:
        self._row = value
        self.inner.row = value

    @property
    def needs_gram(self) -> bool:
        return self.inner.needs_gram

    @property
    def uses_preference(self) -> bool:
        return self.inner.uses_preference

    @property
    def random_weights(self) -> bool:
        return self.inner.random_weights

    @property
    def resumable(self) -> bool:
        return self.inner.resumable

    @property
    def needs_losses_after_step(self) -> bool:
        return self.inner.needs_losses_after_step

    @property
    def parameter_lr(self) -> float | None:  # UW's own rate for its log-variances
        return self.inner.parameter_lr

    @property
    def unique_weights(self) -> bool:
        return self.inner.unique_weights

    @property
    def gram_scale_invariant(self) -> bool:
        return self.inner.gram_scale_invariant

    @property
    def reads_losses(self) -> bool:
        return self.inner.reads_losses

    def supports(self, m: int) -> bool:
        return self.inner.supports(m)

    def prepare(self, num_objectives: int) -> None:
        self.inner.prepare(num_objectives)

    def parameters(self) -> list:
        return self.inner.parameters()

    def after_step(self, losses) -> None:
        self.inner.after_step(losses)

    def _inner_weights(self, losses, gram, preference, **extra) -> tuple[np.ndarray, dict]:
        """The inner combiner's weights at this wrapper's step (inputs already validated)."""
        self.inner._step, self.inner._calls = self._step, self._calls
        w, diag = self.inner._combine(losses, gram, preference, **extra)
        return np.asarray(w, dtype=np.float64), dict(diag)

    def _check_state_keys(self, state: dict, keys: set[str]) -> None:
        if set(state) != keys:
            raise ValueError(
                f"combiner {self.name!r} keeps {', '.join(sorted(keys))}; the checkpoint holds "
                f"{', '.join(sorted(state)) or 'nothing'} (made with another combiner?)"
            )


class CRMOGM(_Wrapper):
    """CR-MOGM (Zhou et al., NeurIPS 2022): the inner combiner's weights ŵ_t,
    smoothed across steps, w_t = α·w_{t−1} + (1 − α)·ŵ_t, starting from w_0 = ŵ_0 (so the first
    step is the inner combiner's, as TorchJD's CRMOGMWeighting). α = 0 is the inner combiner;
    α = 1 freezes the first weights.

    Flags follow the inner combiner (preference, randomness, resumability, simplex: a convex
    combination of points of the simplex stays on it).

    State (``state_dict``): the weights after the last step, those before it, that step, and the
    inner combiner's own state. The smoothing advances once per optimizer step: calling again at
    the same ``step`` smooths against the weights before that step (the inner combiner decides for
    its own state)."""

    name = "cr_mogm"

    def __init__(self, inner: Combiner, alpha: float = 0.9, on_failure: str = "raise"):
        super().__init__(inner, on_failure)
        self.alpha = self.check_number("alpha", alpha, 0.0)
        if self.alpha > 1.0:
            raise ValueError(f"combiner.alpha must be a finite number in [0, 1]. Found {alpha!r}")
        self.name = f"cr_mogm[{inner.name}]"
        self._weights: np.ndarray | None = None  # w after the last step
        self._before: np.ndarray | None = None  # w before the last step
        self._last_step: int | None = None

    @property
    def weights_on_simplex(self) -> bool:
        return self.inner.weights_on_simplex

    @property
    def uses_criterion_grad(self) -> bool:
        return self.inner.uses_criterion_grad

    def state_dict(self) -> dict:
        def plain(a):
            return None if a is None else [float(x) for x in a]

        return {
            "weights": plain(self._weights),
            "weights_before": plain(self._before),
            "step": self._last_step,
            "inner": self.inner.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self._check_state_keys(state, {"weights", "weights_before", "step", "inner"})

        def array(a):
            return None if a is None else np.array(a, dtype=np.float64)

        self.inner.load_state_dict(state["inner"])
        self._weights, self._before = array(state["weights"]), array(state["weights_before"])
        self._last_step = None if state["step"] is None else int(state["step"])
        if self._last_step is not None:
            self._calls = self._last_step + 1  # calls without a step continue counting

    def _combine(self, losses, gram, preference, **extra):
        m = losses.size
        same_step = self._last_step is not None and self._step == self._last_step
        previous = self._before if same_step else self._weights
        if previous is not None and previous.size != m:
            raise ValueError(
                f"combiner {self.name!r} holds weights for {previous.size} objectives; got {m}"
            )
        fresh, diag = self._inner_weights(losses, gram, preference, **extra)
        w = fresh if previous is None else self.alpha * previous + (1.0 - self.alpha) * fresh
        self._before, self._weights, self._last_step = previous, w, self._step
        diag["inner_change"] = float(np.abs(w - fresh).max())
        return w, diag


class LogGram(_Wrapper):
    """The inner combiner applied to the objectives log ℓ_i (the FAMO paper's LOG_MGDA,
    LOG_CAGrad and LOG_IMTLG; DB-MTL without its gradient EMA is close). Their gradients are
    ∇ℓ_i/ℓ_i, so with D = diag(1/ℓ) the inner combiner sees the Gram K' = D·K·D and the losses
    log ℓ (and the same preference), and its weights w' for log ℓ become w = D·w' for ℓ: the
    direction Gᵀw is the gradient of Σ w'_i log ℓ_i.

    ``normalize: true`` divides w by Σ_i w'_i/ℓ_i, the scale of the FAMO reference code (which
    descends Σ w'_i log ℓ_i / Σ_j w'_j/ℓ_j): for an inner combiner on the simplex, w is then on
    the simplex too. Losses must be > 0 (else SolverError, handled by ``on_failure``); with
    ``normalize``, so must Σ_i w'_i/ℓ_i.

    Stateless itself; the inner combiner's state is its state. Flags follow the inner combiner.
    Only inner combiners that read the Gram matrix and the preference, not the loss values
    (``reads_losses`` False), are accepted: log ℓ < 0 wherever ℓ < 1, and each loss-reading
    combiner assumes losses on the task's own positive scale (SI-LS, GLS and FAMO take their
    log; EPO's and PNG's non-uniformity normalise r⊙ℓ to a distribution; DWA divides period
    means, whose sign would change as ℓ crosses 1; UW's ℓ·e^{−s}/2 + s/2 has no minimum in s for
    ℓ < 0; STCH's default ideal point z = 0 lies above log ℓ for ℓ < 1, where a larger r_i then
    means less weight). Such a combiner is refused when the wrapper is built."""

    name = "log_gram"

    def __init__(self, inner: Combiner, normalize: bool = False, on_failure: str = "raise"):
        super().__init__(inner, on_failure)
        if inner.reads_losses or inner.uses_criterion_grad:
            raise ValueError(
                f"combiner/inner={inner.name}: log_gram cannot wrap {inner.name!r}, which reads "
                "the loss values and would get log ℓ (negative for ℓ < 1). Allowed: inner "
                "combiners that read only the Gram matrix and the preference (mgda, cagrad, "
                "imtl_g, upgrad, dualproj, nash_mtl, fairgrad, pcgrad, gradvac, aligned_mtl, "
                "config, torchjd, ls, rlw)"
            )
        if not isinstance(normalize, bool):
            raise ValueError(f"combiner.normalize must be true or false. Found {normalize!r}")
        self.normalize = normalize
        self.name = f"log_gram[{inner.name}]"

    @property
    def weights_on_simplex(self) -> bool:
        return self.normalize and self.inner.weights_on_simplex

    @property
    def reads_losses(self) -> bool:
        return True  # its weights are w'/ℓ

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    def after_step(self, losses) -> None:
        import torch

        losses = torch.as_tensor(losses)
        if not bool((losses > 0).all()):
            raise SolverError(f"{self.name}: log of losses ≤ 0 after the step")
        self.inner.after_step(torch.log(losses))

    def _combine(self, losses, gram, preference):
        if np.any(losses <= 0.0):
            raise SolverError(
                f"{self.name} needs losses > 0 (it weights the gradients of log ℓ). "
                f"Found {np.array2string(losses, precision=6)}"
            )
        inv = 1.0 / losses
        log_gram = None if gram is None else gram * np.outer(inv, inv)
        inner_w, diag = self._inner_weights(np.log(losses), log_gram, preference)
        w = inv * inner_w
        if self.normalize:
            total = float(w.sum())
            if not total > 0.0:
                raise SolverError(f"{self.name}: normalize needs Σ w'_i/ℓ_i > 0. Found {total:.6g}")
            w = w / total
        return w, diag
