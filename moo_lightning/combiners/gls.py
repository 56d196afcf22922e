"""Geometric loss strategy (GLS; Chennupati et al., CVPR Workshops 2019)."""

from __future__ import annotations

import numpy as np

from moo_lightning.combiners.base import Combiner, SolverError, _fmt


class GeometricLoss(Combiner):
    """GLS: minimise the geometric mean g(ℓ) = (Π_i ℓ_i)^{1/m} of the losses.

    Its gradient with respect to the losses is w_i = ∂g/∂ℓ_i = g / (m·ℓ_i), so one ordinary
    backward of Σ w_i ℓ_i is the gradient of g (no Gram matrix). Objectives whose loss is small get
    a large weight: g is invariant to rescaling any single loss, so a loss's units do not matter.
    Needs every loss > 0 (the geometric mean of a zero loss has no useful gradient); otherwise the
    combine fails (SolverError, so ``on_failure`` applies). Computed through logs, so no product
    under- or overflows. Ignores the preference.
    """

    needs_gram = False
    name = "gls"
    reads_losses = True
    uses_preference = False
    weights_on_simplex = False  # Σw = g·mean(1/ℓ)

    def _combine(self, losses, gram, preference):
        if np.any(losses <= 0):
            raise SolverError(f"gls needs losses > 0. Found {_fmt(losses)}")
        logs = np.log(losses)
        g = float(np.exp(logs.mean()))
        # w_i = g/(m ℓ_i) = exp(mean(log ℓ) − log ℓ_i)/m: no overflow at any loss scale
        w = np.exp(logs.mean() - logs) / losses.size
        return w, {"geometric_mean": g}
