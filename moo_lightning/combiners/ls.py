"""Linear scalarisation (the weighted sum Σ r_i ℓ_i of the preference)."""

from __future__ import annotations

from moo_lightning.combiners.base import Combiner


class LinearScalarization(Combiner):
    """LS: w = r / Σr. Needs no Gram matrix, so the step is one ordinary backward of Σ w_i ℓ_i."""

    needs_gram = False
    name = "ls"

    def _combine(self, losses, gram, preference):
        w = preference / preference.sum()
        return w, {}
