"""Any Gramian weighting of TorchJD (SimplexLab/TorchJD) behind our combiner interface."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from moo_lightning.combiners.base import Combiner, SolverError

# Weightings that read only the number of rows of their input: they accept the Gram (m, m) as well
# as the Jacobian (m, n). The other matrix weightings (ExcessMTL, MoDo, SDMGrad) need J itself.
_SHAPE_ONLY = ("Mean", "Sum", "Constant", "Random")
# Weightings whose weights always lie on the simplex (w ≥ 0, Σw = 1).
_ON_SIMPLEX = ("MGDA", "Mean", "Random", "Krum")
# Weightings whose weights do not change when K is multiplied by a positive factor, at any scale.
# UPGrad, DualProj and CAGrad are left out: they zero a Gram whose trace is below norm_eps (1e-4 by
# default), an absolute threshold; FairGrad and GradVac/PCD add absolute epsilons.
_SCALE_INVARIANT = (
    "MGDA",
    "IMTLG",
    "AlignedMTL",
    "PCGrad",
    "Krum",
    "Mean",
    "Sum",
    "Constant",
    "Random",
)
# keyword arguments that carry a preference-like vector
_PREFERENCE_KWARGS = {"pref_vector": ("UPGrad", "DualProj", "AlignedMTL"), "weights": ("Constant",)}
# settings of the QuadprogProjector that UPGrad and DualProj accept directly in combiner.kwargs
_PROJECTOR_KWARGS = ("norm_eps", "reg_eps")


def _weightings() -> dict[str, type]:
    """Short name (no 'Weighting' suffix) -> TorchJD weighting class usable on a Gram matrix."""
    import torchjd.aggregation as agg

    try:
        from torchjd.aggregation._weighting_bases import _GramianWeighting
    except ImportError:  # pragma: no cover - a TorchJD that moved its private bases
        _GramianWeighting = ()
    out = {}
    for attr in agg.__all__:
        cls = getattr(agg, attr)
        if not (isinstance(cls, type) and issubclass(cls, agg.Weighting)):
            continue
        if cls is agg.Weighting or not attr.endswith("Weighting"):
            continue
        short = attr.removesuffix("Weighting")
        gram = bool(_GramianWeighting) and issubclass(cls, _GramianWeighting)
        if gram or short in _SHAPE_ONLY or short == "CRMOGM":
            out[short] = cls
    return out


def _short(name) -> str:
    return str(name).removesuffix("Weighting")


def _accepted(cls) -> list[str]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if "projector" in names:
        names = [n for n in names if n != "projector"] + list(_PROJECTOR_KWARGS)
    return names


def _required(cls) -> list[str]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return [p.name for p in params if p.default is inspect.Parameter.empty]


def _as_plain(value):
    """Mappings and sequences (a config's containers included) as plain dicts and lists: the
    library never imports the config system (Hydra stays at the edge)."""
    if isinstance(value, Mapping):
        return {str(k): _as_plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_as_plain(v) for v in value]
    return value


# methods whose weights are random draws (seeded here from the run seed and the step)
_RANDOM = ("PCGrad", "Random", "GradVac")


class TorchJD(Combiner):
    """A TorchJD weighting (``method``, with or without the ``Weighting`` suffix) applied to the
    Gram matrix K (float64) of our per-objective gradients; the update is d = Gᵀw as usual.

    ``kwargs`` are the weighting's own keyword arguments, checked against its signature. Vectors
    (``pref_vector``, Constant's ``weights``, CRMOGM's ``initial_weights``) are lists; UPGrad and
    DualProj take ``norm_eps``/``reg_eps`` (the settings of their QuadprogProjector); CRMOGM's
    ``weighting`` is a method name or ``{method: ..., kwargs: {...}}``.

    Preference: UPGrad, DualProj and AlignedMTL (``pref_vector``) and Constant (``weights``) use
    the run's preference r/Σr when that argument is not fixed in ``kwargs`` (TorchJD's own default,
    1/m, is the uniform preference); every other method ignores it (``uses_preference`` False).
    CRMOGM uses it when its inner weighting does.

    Randomness (PCGrad, Random, GradVac) runs under ``torch.random.fork_rng`` seeded from
    :meth:`generator`, so it depends on (run seed, step) only and never touches the global RNG.
    Stateful weightings (GradVac, CRMOGM, PCD) keep TorchJD's hidden state: ``resumable`` is False.
    Any error TorchJD raises during a combine, or non-finite weights, becomes a SolverError.
    """

    needs_gram = True
    name = "torchjd"

    def __init__(self, method: str = "UPGrad", kwargs=None, on_failure: str = "raise"):
        super().__init__(on_failure)
        kwargs = _as_plain(kwargs) or {}
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"combiner.kwargs must be a mapping. Found {kwargs!r}")
        self.method = _short(method)
        self.kwargs = dict(kwargs)
        self._weighting, self._pref_holder = self._build(self.method, self.kwargs, "combiner")
        inner = self._inner_method()
        self.uses_preference = self._pref_holder is not None
        self.resumable = not self._is_stateful(self._weighting)
        if self.method == "CRMOGM":
            simplex = inner in _ON_SIMPLEX or (inner == "Constant" and self.uses_preference)
            self.weights_on_simplex = simplex
            self.gram_scale_invariant = inner in _SCALE_INVARIANT
        else:
            const_pref = self.method == "Constant" and self.uses_preference
            self.weights_on_simplex = self.method in _ON_SIMPLEX or const_pref
            self.gram_scale_invariant = self.method in _SCALE_INVARIANT
        self.random_weights = (inner if self.method == "CRMOGM" else self.method) in _RANDOM
        self.name = f"torchjd[{self.method}]"

    def _inner_method(self) -> str:
        if self.method != "CRMOGM":
            return self.method
        inner = self.kwargs.get("weighting")
        inner = _as_plain(inner)
        return _short(inner.get("method") if isinstance(inner, Mapping) else inner)

    @staticmethod
    def _is_stateful(weighting) -> bool:
        from torchjd._mixins import Stateful

        return any(isinstance(mod, Stateful) for mod in weighting.modules())

    @classmethod
    def _build(cls, method: str, kwargs: dict, where: str):
        """(weighting, object whose preference attribute we set per call or None)."""
        table = _weightings()
        if method not in table:
            raise ValueError(
                f"{where}.method {method!r} is not a TorchJD Gramian weighting. "
                f"Available: {', '.join(sorted(table))} (ExcessMTL, MoDo and SDMGrad need the "
                "Jacobian itself, not its Gram)"
            )
        klass = table[method]
        accepted = _accepted(klass)
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(
                f"{where}.kwargs: {method} does not accept {', '.join(unknown)}. "
                f"It accepts: {', '.join(accepted) or 'no keyword arguments'}"
            )
        pref_key = next((k for k, ms in _PREFERENCE_KWARGS.items() if method in ms), None)
        missing = [
            k for k in _required(klass) if k not in kwargs and k != pref_key and k != "weighting"
        ]
        if method == "CRMOGM" and "weighting" not in kwargs:
            missing.append("weighting")
        if missing:
            raise ValueError(
                f"{where}.kwargs: {method} needs {', '.join(missing)} "
                f"(e.g. +{where}.kwargs.{missing[0]}=...). It accepts: {', '.join(accepted)}"
            )
        args, holder = {}, None
        inner_holder = None
        for key, value in kwargs.items():
            value = _as_plain(value)
            if key in _PROJECTOR_KWARGS:
                continue
            if key == "weighting":
                if isinstance(value, Mapping):
                    extra = sorted(set(value) - {"method", "kwargs"})
                    if extra or "method" not in value:
                        raise ValueError(
                            f"{where}.kwargs.weighting must be a method name or "
                            f"{{method: ..., kwargs: {{...}}}}. Found {value!r}"
                        )
                    inner_method, inner_kwargs = _short(value["method"]), value.get("kwargs") or {}
                else:
                    inner_method, inner_kwargs = _short(value), {}
                if inner_method == "CRMOGM":
                    raise ValueError(f"{where}.kwargs.weighting: CRMOGM cannot wrap CRMOGM")
                args[key], inner_holder = cls._build(
                    inner_method, dict(inner_kwargs), f"{where}.kwargs.weighting"
                )
            elif key in ("pref_vector", "weights", "initial_weights", "tau") and isinstance(
                value, list | tuple
            ):
                try:
                    args[key] = torch.tensor([float(v) for v in value], dtype=torch.float64)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{where}.kwargs.{key} must be a list of numbers. Found {value!r}"
                    ) from None
            else:
                args[key] = value
        if any(k in kwargs for k in _PROJECTOR_KWARGS):
            from torchjd._linalg import QuadprogProjector

            proj = {k: kwargs[k] for k in _PROJECTOR_KWARGS if k in kwargs}
            try:
                args["projector"] = QuadprogProjector(**proj)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}.kwargs ({method}): {err}") from None
        uses_pref = pref_key is not None and pref_key not in kwargs
        if method == "Constant" and uses_pref:
            args["weights"] = torch.ones(1, dtype=torch.float64)  # replaced at every call
        try:
            weighting = klass(**args)
        except (TypeError, ValueError, ImportError) as err:
            msg = str(err).replace("\n", " ")
            raise ValueError(f"{where}.kwargs ({method}): {msg}") from None
        if uses_pref:
            holder = (weighting, pref_key)
        elif inner_holder is not None:
            holder = inner_holder
        return weighting, holder

    def _combine(self, losses, gram, preference):
        m = losses.size
        if self._pref_holder is not None:
            obj, key = self._pref_holder
            setattr(obj, key, torch.as_tensor(preference / preference.sum(), dtype=torch.float64))
        seed = int(self.generator().integers(2**63 - 1))
        K = torch.as_tensor(gram, dtype=torch.float64)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                w = self._weighting(K)
        except Exception as err:  # TorchJD's own failures (QP, eigh, shapes, ...)
            msg = str(err).replace("\n", " ")
            raise SolverError(f"TorchJD {self.method} failed: {type(err).__name__}: {msg}") from err
        w = np.asarray(torch.as_tensor(w).detach().to("cpu", torch.float64).numpy(), dtype=float)
        if w.shape != (m,) or not np.all(np.isfinite(w)):
            raise SolverError(f"TorchJD {self.method} returned weights {w!r} for {m} objectives")
        return w.copy(), {"weight_sum": float(w.sum())}

    def __repr__(self) -> str:
        return f"TorchJD(method={self.method!r}, kwargs={self.kwargs!r})"
