"""PCGrad: gradient surgery (Yu, Kumar, Gupta, Levine, Hausman & Finn, NeurIPS 2020), from K."""

from __future__ import annotations

import numpy as np

from moo_lightning.combiners.base import Combiner


def pcgrad_weights(gram: np.ndarray, orders: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Σ_i v_i, where v_i starts at e_i and, for j ≠ i in ``orders[i]``, loses its component
    along g_j when it conflicts with it: if (Kv)_j < 0 then v ← v − ((Kv)_j/K_jj)·e_j.
    Returns the weights and the number of projections made."""
    m = gram.shape[0]
    w = np.zeros(m)
    projections = 0
    for i in range(m):
        v = np.zeros(m)
        v[i] = 1.0
        for j in orders[i]:
            if j == i:
                continue
            dot = float(gram[j] @ v)
            if dot < 0.0 and gram[j, j] > 0.0:  # K_jj = 0 means g_j = 0: nothing to remove
                v[j] -= dot / gram[j, j]
                projections += 1
        w += v
    return w, projections


class PCGrad(Combiner):
    """PCGrad: K (m, m) -> w = Σ_i v_i (m,) (a sum, as the paper and TorchJD): every gradient,
    taken through the others in a random order, is projected onto the normal plane of each one
    it conflicts with. The orders come from :meth:`generator` (one permutation per objective,
    seeded by run seed and global step), so DDP ranks and resumed runs take the same steps.
    The preference is not used."""

    name = "pcgrad"
    uses_preference = False
    random_weights = True
    weights_on_simplex = False  # a sum of m projected gradients; projections only add: Σw ≥ m

    def orders(self, m: int) -> list[np.ndarray]:
        """The permutations this step uses, one per objective (drawn from ``generator()``)."""
        rng = self.generator()
        return [rng.permutation(m) for _ in range(m)]

    def _combine(self, losses, gram, preference):
        m = losses.size
        # with two objectives each gradient has one other to meet: the order cannot matter,
        # so no permutation is drawn
        orders = [np.array([1]), np.array([0])] if m == 2 else self.orders(m)
        w, projections = pcgrad_weights(gram, orders)
        return w, {"projections": float(projections)}
