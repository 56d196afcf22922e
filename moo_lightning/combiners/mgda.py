"""MGDA: the min-norm point of the convex hull of the gradients (Désidéri 2012; Sener & Koltun,
NeurIPS 2018)."""

from __future__ import annotations

import numpy as np

from moo_lightning.combiners.base import Combiner


def _kkt_gap(gram: np.ndarray, w: np.ndarray) -> float:
    Kw = gram @ w
    return float(Kw[w > 0].max() - Kw.min())


def _polish(gram: np.ndarray, w: np.ndarray, tol: float) -> np.ndarray | None:
    """Try the exact minimiser on the face of w's support, then on the face of the coordinates
    that are nearly active (small weights FW has not yet driven to zero left out)."""
    Kw = gram @ w
    near = (w > 0) & (Kw - Kw.min() <= 1e-3 * (Kw[w > 0].max() - Kw.min()))
    for support in (w > 0, near, w > 1e-6 * w.max()):
        cand = _solve_on_face(gram, np.flatnonzero(support))
        if cand is not None and _kkt_gap(gram, cand) <= tol:
            return cand
    return None


def _solve_on_face(gram: np.ndarray, S: np.ndarray) -> np.ndarray | None:
    """Exact minimiser on the face of Δ spanned by S: solve the KKT system
    [K_SS 1; 1ᵀ 0][w_S; −ν] = [0; 1] (least squares: K_SS may be singular). None if the
    solution leaves the simplex."""
    k = S.size
    if k == 0:
        return None
    A = np.zeros((k + 1, k + 1))
    A[:k, :k] = gram[np.ix_(S, S)]
    A[:k, k] = A[k, :k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    sol = np.linalg.lstsq(A, rhs, rcond=None)[0][:k]
    if np.any(sol < 0) or not np.isclose(sol.sum(), 1.0):
        return None
    out = np.zeros(gram.shape[0])
    out[S] = sol
    return out


def min_norm_weights(
    gram: np.ndarray, tol: float = 1e-10, max_iter: int = 2000
) -> tuple[np.ndarray, float, int, bool]:
    """argmin_{w ∈ Δ} wᵀKw for a PSD Gram K (m, m).

    m = 2 uses the closed form with exact vertices. m > 2 runs pairwise Frank–Wolfe with exact
    line search from the uniform point; it stops when the KKT gap
    max_{w_i>0} (Kw)_i − min_i (Kw)_i falls below ``tol`` × max diag(K), or after ``max_iter``.
    Returns (w, wᵀKw, iterations, converged).
    """
    m = gram.shape[0]
    if m == 1:
        return np.ones(1), float(gram[0, 0]), 0, True
    scale = float(np.max(np.diag(gram)))
    if scale <= 0.0:  # all gradients are zero: every point of Δ is optimal
        return np.full(m, 1.0 / m), 0.0, 0, True
    if m == 2:
        k11, k22, k12 = gram[0, 0], gram[1, 1], gram[0, 1]
        if k12 >= k11 and k12 >= k22:  # identical gradients: any w is optimal
            gamma = 0.5
        elif k12 >= k11:
            gamma = 1.0
        elif k12 >= k22:
            gamma = 0.0
        else:
            gamma = float(np.clip((k22 - k12) / (k11 + k22 - 2.0 * k12), 0.0, 1.0))
        w = np.array([gamma, 1.0 - gamma])
        return w, float(w @ gram @ w), 0, True

    w = np.full(m, 1.0 / m)
    Kw = gram @ w
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        toward = int(np.argmin(Kw))
        support = np.flatnonzero(w > 0)
        away = int(support[np.argmax(Kw[support])])
        if Kw[away] - Kw[toward] <= tol * scale:
            converged = True
            break
        if it % 20 == 0:
            polished = _polish(gram, w, tol * scale)
            if polished is not None:
                w, converged = polished, True
                break
        # move mass from `away` to `toward`; exact line search of the quadratic along e_t − e_a
        slope = Kw[toward] - Kw[away]  # = dᵀKw < 0
        curv = gram[toward, toward] + gram[away, away] - 2.0 * gram[toward, away]
        step = w[away] if curv <= 0.0 else min(w[away], -slope / curv)
        w[toward] += step
        w[away] -= step
        if w[away] < 1e-15:
            w[away] = 0.0
        Kw += step * (gram[:, toward] - gram[:, away])
    w = np.clip(w, 0.0, None)
    w /= w.sum()
    return w, float(w @ gram @ w), it, converged


class MGDA(Combiner):
    """MGDA (Désidéri 2012; Sener & Koltun 2018): w* = argmin_{w∈Δ} wᵀKw, K (m, m) -> w (m,)."""

    name = "mgda"
    uses_preference = False  # the min-norm point ignores r

    def __init__(self, tol: float = 1e-10, max_iter: int = 2000, on_failure: str = "raise"):
        super().__init__(on_failure)
        if max_iter < 1:
            raise ValueError(f"combiner.max_iter must be >= 1. Found {max_iter}")
        self.tol = float(tol)
        self.max_iter = int(max_iter)

    def _combine(self, losses, gram, preference):
        w, value, iters, converged = min_norm_weights(gram, self.tol, self.max_iter)
        return w, {"g": value, "iterations": float(iters), "converged": float(converged)}
