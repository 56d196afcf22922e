"""Random loss weighting (RLW; Lin et al., TMLR 2022)."""

from __future__ import annotations

import numpy as np

from moo_lightning.combiners.base import Combiner


class RandomLossWeighting(Combiner):
    """RLW: at every step, w = softmax(z) with z ~ N(0, I_m) drawn afresh.

    The draw comes from :meth:`generator`, seeded by (run seed, global step): every DDP rank and
    a resumed run use the same weights at the same step, and there is nothing else to checkpoint.
    The weights lie on the simplex; they ignore the losses, the gradients and the preference, so
    in expectation the step is that of a (rescaled) equal-weight sum, with random fluctuations the
    paper argues help escape poor points. One ordinary backward of Σ w_i ℓ_i (no Gram matrix).
    """

    needs_gram = False
    name = "rlw"
    uses_preference = False
    random_weights = True

    def _combine(self, losses, gram, preference):
        z = self.generator().standard_normal(losses.size)
        e = np.exp(z - z.max())
        w = e / e.sum()
        return w, {"max_weight": float(w.max())}
