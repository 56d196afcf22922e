"""The combiner interface: (losses, Gram matrix, preference) -> weights + diagnostics."""

from __future__ import annotations

import abc
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from moo_lightning.combiners.criteria import ParameterCriterion
from moo_lightning.errors import SolverError


@dataclass
class Combined:
    """What a combiner returns: weights (m,) such that the update direction is d = Gᵀ·weights,
    and scalar diagnostics for logging. ``fallback`` is True when the solver failed and the
    explicit fallback policy produced the weights; ``recovered`` when the primary solver failed
    but the same problem was solved another way (counted, not a fallback)."""

    weights: torch.Tensor
    diagnostics: dict[str, float] = field(default_factory=dict)
    fallback: bool = False
    recovered: bool = False
    #: the weight of a parameter-space criterion's own gradient ∇F(θ) in the direction
    #: (PNG given a ParameterCriterion: 1); 0 otherwise
    criterion_weight: float = 0.0


def _float64(values) -> np.ndarray:
    """A float64 numpy copy-or-view of a tensor, array or list, on the CPU, detached."""
    if isinstance(values, torch.Tensor):
        if values.dtype == torch.float64 and values.is_cpu:  # the usual call: a view, as below
            return (values.detach() if values.requires_grad else values).numpy()
        return values.detach().to("cpu", torch.float64).numpy()
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    try:  # a list or an array of numbers: straight to float64 (through torch it would be float32)
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):  # e.g. a list of tensors that require grad
        pass
    try:
        rows = torch.stack([torch.as_tensor(v) for v in values])
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"expected numbers in a regular shape: {err}") from None
    return rows.detach().to("cpu", torch.float64).numpy()


def _all_finite(arr: np.ndarray) -> bool:
    """Every entry finite. One reduction on the usual path: a finite sum means finite entries;
    only a sum that is inf or nan (a non-finite entry, or finite entries that overflow) is
    looked at entry by entry."""
    return math.isfinite(float(arr.sum())) or bool(np.isfinite(arr).all())


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in np.ravel(values)) + "]"


def as_preference(preference, m: int | None = None, key: str = "preference") -> np.ndarray:
    """A preference as a positive float64 vector; a scalar r1 means (r1, 1 - r1) for m = 2.
    ``key``: the setting errors name (the run's ``preference``, or a row of an ensemble's)."""
    if (
        isinstance(preference, np.ndarray)
        and preference.dtype == np.float64
        and preference.ndim == 1
        and (m is None or preference.size == m)
        and preference.size
        and math.isfinite(float(preference.sum()))
        and preference.min() > 0.0
    ):  # already a valid preference vector (the usual call): one copy, no conversions
        return preference.copy()
    try:
        scalar = np.ndim(preference) == 0
        arr = np.atleast_1d(np.asarray(preference, dtype=np.float64))
    except (TypeError, ValueError):  # a word, a mapping, rows of different lengths
        allowed = f"a list of numbers > 0, one per objective{f' ({m})' if m else ''}"
        if m in (None, 2):
            allowed = f"a number r1 in (0, 1), meaning (r1, 1 - r1), or {allowed}"
        raise ValueError(
            f"{key} must be {allowed}, e.g. 0.2 or [0.2,0.8]. Found {preference!r}"
        ) from None
    if arr.ndim != 1:
        raise ValueError(f"{key} must be a list of numbers. Found shape {arr.shape}")
    if scalar and m in (None, 2):
        r1 = float(arr[0])
        if not 0.0 < r1 < 1.0:
            raise ValueError(
                f"{key}: a single number r1 means (r1, 1 - r1) and must lie in (0, 1). Found {r1:g}"
            )
        arr = np.array([r1, 1.0 - r1])
    if m is not None and arr.size != m:
        raise ValueError(
            f"{key} must have one entry per objective ({m}). "
            f"Found {arr.size} entries: {_fmt(arr)}; set {key}=[...] with {m} positive entries"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{key} entries must be finite and > 0. Found {_fmt(arr)}")
    return arr


class Combiner(abc.ABC):
    """Base class. Subclasses implement ``_combine`` on float64 numpy arrays.

    Validation happens once, here: losses (m,) finite; Gram (m, m) finite and symmetric
    (when the combiner needs one); preference (m,) positive (when the combiner uses one: the
    others are handed the uniform preference 1/m, whatever they were given, so a preference
    meant for another number of objectives never stops them). Solves run in float64 on the
    CPU; weights come back with the device and dtype of ``losses``.
    """

    #: False for combiners whose weights do not depend on the gradients (LS): the module then
    #: takes one ordinary backward of the weighted sum instead of building per-objective grads.
    needs_gram: bool = True
    #: True for combiners that steer by an outside criterion's gradient ∂F/∂ℓ (PNG): only they
    #: accept ``criterion_grad``; passing it to another combiner is an error, never dropped.
    uses_criterion_grad: bool = False
    #: Short name used in logs and diagnostics.
    name: str = "combiner"
    #: Promises the shared property tests check for every combiner in moo_lightning/conf/combiner/:
    #: weights on the simplex (w ≥ 0, Σw = 1); weights unique for a full-rank Gram (PNG's dual
    #: is unique only up to K's null space, so its effect Kw is compared instead); weights
    #: unchanged when every gradient is scaled by the same factor.
    weights_on_simplex: bool = True
    unique_weights: bool = True
    gram_scale_invariant: bool = True
    #: False for combiners whose weights ignore the preference (CAGrad, PCGrad, Nash-MTL, ...):
    #: their runs record no preference, carry no W&B ``r`` label, and a sweep over
    #: ``preference`` with them is refused instead of running duplicates.
    uses_preference: bool = True
    #: True for combiners whose weights depend on the loss values themselves, not only on their
    #: number (SI-LS, GLS, FAMO, EPO, DWA, STCH, UW, PNG): they assume losses on the scale the
    #: task defines them (most need ℓ > 0), so a wrapper that hands its inner combiner other
    #: values (log_gram's log ℓ) refuses them.
    reads_losses: bool = False
    #: True for combiners that update their state from the losses recomputed on the same batch
    #: after the optimizer step (FAMO): the module recomputes them (no grad), averages them over
    #: DDP ranks and calls :meth:`after_step`.
    needs_losses_after_step: bool = False
    #: True for combiners whose weights are random draws (PCGrad's order, RLW's weights): the
    #: same (run seed, step) gives the same weights, but permuting the objectives need not
    #: permute them (the shared property tests skip that promise).
    random_weights: bool = False
    #: False for combiners whose state cannot be checkpointed (a wrapped third-party method
    #: with hidden state): resuming such a run is refused in one line.
    resumable: bool = True

    # --- state (explicit, small, identical on every DDP rank) ------------------------------------
    #
    # A stateful combiner keeps vectors or matrices of size m or m×m and counters, updated only
    # from its inputs (the all-reduced losses and Gram), so every rank holds the same state.
    # ``state_dict`` returns it as plain numbers, lists and tensors (saved in the training
    # checkpoint, read back with weights_only); ``load_state_dict`` restores it exactly, so a
    # resumed run takes the same steps as the uninterrupted one. Randomness comes from
    # :meth:`generator`, seeded by (run seed, global step), never from the global RNG.

    #: the learning rate of :meth:`parameters` (their own param group); None: the optimizer's
    parameter_lr: float | None = None
    #: the run's seed (set by the module at fit start); with the step it seeds ``generator``
    seed: int = 0
    #: the ensemble member this copy combines for (0 for a single model)
    row: int = 0

    def state_dict(self) -> dict:
        """The combiner's state between steps (empty for a stateless combiner)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output."""
        if state:
            raise ValueError(
                f"combiner {self.name!r} keeps no state, but the checkpoint holds some for it "
                f"({', '.join(sorted(state))}): it was made with another combiner"
            )

    def prepare(self, num_objectives: int) -> None:
        """Called by the module with the number of objectives m before the optimizer is built:
        combiners that size their state or learnable weights by m (UW) create them here."""
        return None

    def parameters(self) -> list:
        """Learnable weights of the combiner (UW's log-variances): the module hands them to the
        optimizer next to the model's, and the checkpoint carries them. Their ``.grad`` is set
        by the combiner when it combines."""
        return []

    def after_step(self, losses: torch.Tensor) -> None:
        """The losses (m,) of the same batch after the optimizer step, averaged over DDP ranks
        (only for ``needs_losses_after_step``)."""
        return None

    def generator(self) -> np.random.Generator:
        """A generator seeded by (run seed, current global step): DDP ranks and a resumed run
        draw the same numbers as the uninterrupted one-process run."""
        seed, step = int(self.seed) % 2**63, int(self._step) % 2**63
        if self.row:  # an ensemble's member n > 0: its own stream
            return np.random.default_rng([seed, int(self.row), step])
        return np.random.default_rng([seed, step])

    _step: int = 0
    _calls: int = 0

    def supports(self, m: int) -> bool:
        """Whether this combiner (with its settings) handles ``m`` objectives."""
        return True

    @staticmethod
    def check_number(key: str, value, low: float, strict: bool = False) -> float:
        """A finite real ``value`` >= ``low`` (> ``low`` when ``strict``), else one clear error
        naming ``combiner.<key>``."""
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < low or (strict and value == low):
            bound = f"> {low}" if strict else f">= {low}"
            raise ValueError(f"combiner.{key} must be a finite number {bound}. Found {value!r}")
        return float(value)

    @staticmethod
    def check_cvxpy_solver(name: str) -> str:
        """An installed cvxpy solver, else one clear error listing the installed ones."""
        import cvxpy as cp

        installed = cp.installed_solvers()
        if name not in installed:
            raise ValueError(
                f"combiner.cvxpy_solver {name!r} is not installed. "
                f"Installed: {', '.join(installed)}"
            )
        return name

    def __init__(self, on_failure: str = "raise"):
        if on_failure not in ("raise", "ls"):
            raise ValueError(
                f"combiner.on_failure must be 'raise' or 'ls' (linear scalarisation at the "
                f"preference, or at equal weights for a combiner that ignores it). "
                f"Found {on_failure!r}"
            )
        self.on_failure = on_failure

    def __call__(
        self,
        losses: torch.Tensor,
        gram: torch.Tensor | None,
        preference,
        criterion_grad: torch.Tensor | None = None,
        step: int | None = None,
    ) -> Combined:
        """Weights for one step. ``step`` is the global optimizer step (seeds
        :meth:`generator`; the module passes it); without it the combiner counts its calls."""
        self._step = self._calls if step is None else int(step)
        self._calls = self._step + 1
        l_np = self._check_losses(losses)
        m = l_np.size
        # a combiner that ignores the preference neither reads nor checks the one it is given
        r = as_preference(preference, m) if self.uses_preference else np.full(m, 1.0 / m)
        K = self._check_gram(gram, m) if self.needs_gram else None
        extra = {}
        if criterion_grad is not None:
            if not self.uses_criterion_grad:
                raise ValueError(
                    f"combiner {self.name!r} does not steer by a criterion: it cannot use the "
                    "criterion gradient it was given (ensemble criteria such as the energy "
                    "distance need combiner=png)"
                )
            extra["criterion_grad"] = self._check_criterion_grad(criterion_grad, m)
        start = time.perf_counter()
        try:
            try:
                w, diag = self._combine(l_np, K, r, **extra)
            except np.linalg.LinAlgError as err:  # an eigen/SVD routine that did not converge
                raise SolverError(f"linear algebra failed: {err}") from err
            diag["combine_ms"] = 1e3 * (time.perf_counter() - start)
            fallback = False
            recovered = bool(diag.pop("recovered", 0.0))
            criterion_weight = float(diag.pop("criterion_weight", 0.0))
        except SolverError as err:
            if self.on_failure == "raise":
                raise
            # LS at the run's preference; a combiner that ignores the preference has none
            # recorded for the run, so its fallback is LS at equal weights
            target = "the normalised preference" if self.uses_preference else "equal weights"
            warnings.warn(
                f"{self.name}: {err}; falling back to {target} "
                "(counted in train/combiner/fallbacks)",
                RuntimeWarning,
                stacklevel=2,
            )
            w = r / r.sum()  # the uniform preference for a combiner that ignores it
            diag, fallback, recovered = {"solver_failed": 1.0}, True, False
            criterion_weight = 0.0
        weights = torch.as_tensor(np.asarray(w, dtype=np.float64))
        if not (losses.dtype == torch.float64 and losses.is_cpu):  # else .to() returns it as is
            weights = weights.to(device=losses.device, dtype=losses.dtype)
        return Combined(weights, diag, fallback, recovered, criterion_weight)

    @abc.abstractmethod
    def _combine(
        self, losses: np.ndarray, gram: np.ndarray | None, preference: np.ndarray
    ) -> tuple[np.ndarray, dict[str, float]]: ...

    @staticmethod
    def _check_criterion_grad(grad, m: int):
        if isinstance(grad, ParameterCriterion):
            cross = np.asarray(grad.cross, dtype=np.float64)
            if cross.shape != (m,):
                raise ValueError(
                    f"a parameter criterion's inner products with the {m} objective gradients "
                    f"must be a vector ({m},). Found shape {cross.shape}"
                )
            if not (np.all(np.isfinite(cross)) and math.isfinite(grad.sq_norm)):
                raise ValueError("a parameter criterion's inner products must be finite")
            return ParameterCriterion(cross, float(grad.sq_norm))
        arr = torch.as_tensor(grad).detach().to("cpu", torch.float64).numpy()
        if arr.shape != (m,):
            raise ValueError(f"criterion_grad must be a vector ({m},). Found shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"criterion_grad must be finite. Found {_fmt(arr)}")
        return arr

    @staticmethod
    def _check_losses(losses) -> np.ndarray:
        arr = _float64(losses)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"losses must be a vector (m,) with m >= 1. Found shape {arr.shape}")
        if not _all_finite(arr):
            raise ValueError(f"losses must be finite. Found {_fmt(arr)}")
        return arr

    @staticmethod
    def _check_gram(gram, m: int) -> np.ndarray:
        if gram is None:
            raise ValueError("this combiner needs the Gram matrix of the per-objective gradients")
        K = _float64(gram)
        if K.shape != (m, m):
            raise ValueError(f"Gram matrix must be ({m}, {m}) for {m} losses. Found {K.shape}")
        if not _all_finite(K):
            raise ValueError("Gram matrix must be finite. Found non-finite entries")
        # K - Kᵀ is antisymmetric entry by entry (a - b = -(b - a) in floating point): its max
        # is max |K - Kᵀ|, and 0 when K is exactly symmetric (the usual case: nothing to average)
        gap = float((K - K.T).max())
        if gap == 0.0:
            return K
        scale = max(float(np.abs(K).max()), 1e-300)
        if gap > 1e-6 * scale:
            raise ValueError(f"Gram matrix must be symmetric. Found max |K - Kᵀ| = {gap:.3g}")
        return 0.5 * (K + K.T)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def normalised_gram(gram: np.ndarray) -> tuple[np.ndarray, float]:
    """K / max diag(K) and that scale (1 for an all-zero K). The LP and QP solves are invariant to
    a positive rescaling of K; solving on O(1) data keeps solver tolerances meaningful at any
    gradient scale (1e-12 … 1e12)."""
    scale = float(np.max(np.diag(gram)))
    if scale <= 0.0:
        return gram, 1.0
    return gram / scale, scale
