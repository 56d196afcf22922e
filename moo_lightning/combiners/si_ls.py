"""Scale-invariant linear scalarisation (the baseline of Navon et al., ICML 2022)."""

from __future__ import annotations

import numpy as np

from moo_lightning.combiners.base import Combiner, SolverError, _fmt


class ScaleInvariantLS(Combiner):
    """SI-LS: minimise Σ_i r̂_i log ℓ_i with the preference normalised to the simplex, r̂ = r/Σr.

    Its gradient with respect to the losses is w_i = r̂_i / ℓ_i, so one ordinary backward of
    Σ w_i ℓ_i is the gradient of the scalarisation (no Gram matrix). Multiplying any loss by a
    constant adds a constant to the objective, so the direction ignores each loss's units. The
    weights are the exact gradient, not renormalised: as the losses shrink, the step grows like
    1/ℓ. The preference is normalised like LS's, so r = (1, …, 1) gives Σ log ℓ_i / m: the
    reference baseline (nash-mtl ``ScaleInvariantLinearScalarization``, Σ log ℓ_i) divided by m.
    Needs every loss > 0; otherwise the combine fails (SolverError, so ``on_failure`` applies).
    """

    needs_gram = False
    name = "si_ls"
    reads_losses = True
    weights_on_simplex = False  # Σw = Σ r̂_i/ℓ_i

    def _combine(self, losses, gram, preference):
        if np.any(losses <= 0):
            raise SolverError(f"si_ls needs losses > 0. Found {_fmt(losses)}")
        r = preference / preference.sum()
        return r / losses, {"log_objective": float(r @ np.log(losses))}
