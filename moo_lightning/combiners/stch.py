"""Smooth Tchebycheff scalarisation (Lin, Zhang et al., ICML 2024)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from moo_lightning.combiners.base import Combiner, _fmt
from moo_lightning.errors import ConfigError

# μ is measured in the units of the weighted terms r_i(ℓ_i − z_i), with r on the simplex. This
# project's objectives are O(0.1–1) (toy losses in [0, 1), cross-entropy-like text losses), so the
# terms are O(0.05–0.5) and μ must be well below that or the smooth max degenerates towards a
# weighted sum. μ = 0.01 keeps g_μ within μ·log m of the Tchebycheff max (0.007 for m = 2) and, on
# the toy problem's concave front, its minimiser within 0.027 of the Tchebycheff point (0.14 at
# μ = 0.05; at μ = 0.1 it sits at LS's end of the front). Smaller μ costs curvature: g_μ's Hessian
# grows like 1/μ, so plain SGD needs lr ≲ 15μ on the toy problem before it starts to oscillate
# between the objectives. At the toy task's own settings (SGD lr 0.2, 300 steps) μ = 0.01 ends
# within 0.027 of the Tchebycheff point for every preference: bias and a small oscillation at
# r = (0.5, 0.5) are of the same size there, so a smaller default would buy nothing.
DEFAULT_MU = 0.01


class SmoothTchebycheff(Combiner):
    """STCH (Lin, Zhang et al., ICML 2024, Eq. 9): g_μ(ℓ) = μ·log Σ_i exp(r_i(ℓ_i − z_i)/μ).

    losses ℓ (m,), preference (m,) -> weights w = ∇_ℓ g_μ = r ⊙ softmax(r ⊙ (ℓ − z)/μ) (m,), so the
    step is one ordinary backward of Σ w_i ℓ_i (no Gram matrix). The preference is normalised to
    the simplex (the paper's λ ∈ Δ), so μ keeps its meaning whatever scale the preference is
    given in; Σw = Σ r_i softmax_i lies in [min r, max r]. ``ideal`` is the ideal point z (m,);
    None means z = 0, a valid ideal point because this project's objectives are ≥ 0. As μ → 0
    the weight concentrates on argmax_i r_i(ℓ_i − z_i) (the Tchebycheff subgradient), and
    max_i r_i(ℓ_i − z_i) ≤ g_μ ≤ max_i r_i(ℓ_i − z_i) + μ·log m. Computed in float64 with the max
    term subtracted, so no exponent overflows at any loss scale.
    """

    needs_gram = False
    name = "stch"
    reads_losses = True
    weights_on_simplex = False  # Σw = Σ r̂·softmax(…), between min r̂ and max r̂

    def __init__(self, mu: float = DEFAULT_MU, ideal=None, on_failure: str = "raise"):
        super().__init__(on_failure)
        self.mu = self.check_number("mu", mu, 0.0, strict=True)
        self.ideal = None if ideal is None else self._check_ideal(ideal)

    @staticmethod
    def _check_ideal(ideal) -> list[float]:
        """A list of finite numbers (its length is checked against m at the first call)."""
        try:
            values = list(ideal)
        except TypeError:
            values = None
        if isinstance(ideal, str | bytes) or not values:
            raise ValueError(
                f"combiner.ideal must be null (the zero vector) or a list of m finite numbers. "
                f"Found {ideal!r}"
            )
        if not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        ):
            raise ValueError(
                f"combiner.ideal must be null (the zero vector) or a list of m finite numbers. "
                f"Found {values!r}"
            )
        return [float(v) for v in values]

    def _combine(self, losses, gram, preference):
        m = losses.size
        if self.ideal is None:
            z = np.zeros(m)
        elif len(self.ideal) != m:
            # m is first known here; ConfigError (a ValueError) lets train.py report it as one
            # line although training has started
            raise ConfigError(
                f"combiner.ideal must have one entry per objective ({m}). "
                f"Found {len(self.ideal)} entries: {_fmt(np.asarray(self.ideal))}"
            )
        else:
            z = np.asarray(self.ideal, dtype=np.float64)
        r = preference / preference.sum()
        terms = r * (losses - z)  # the Tchebycheff terms r_i(ℓ_i − z_i)
        k = int(np.argmax(terms))
        # subtract the max term before dividing by μ: exponents are ≤ 0 and the largest is 0
        e = np.exp((terms - terms[k]) / self.mu)
        total = e.sum()  # in [1, m]
        weights = r * (e / total)
        diag = {
            "smooth_value": float(terms[k] + self.mu * np.log(total)),
            "max_term": float(terms[k]),
            "max_index": float(k),
        }
        return weights, diag
