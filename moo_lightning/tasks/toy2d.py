"""The two-dimensional toy of the CAGrad and Nash-MTL papers (Liu et al., NeurIPS 2021, Appendix;
Navon et al., ICML 2022, §6.1): two objectives on θ = (x, y) ∈ ℝ², a pair of log/tanh valleys
above the x axis and a pair of quadratic bowls below it. Written from the paper's formulas.

With s(y) = max(tanh(y/2), 0) and t(y) = max(tanh(−y/2), 0),

    f1 = log max(|−(x + 7)/2 − tanh(−y)|, 5·10⁻⁶) + 6
    f2 = log max(|−(x − 3)/2 + tanh(−y) + 2|, 5·10⁻⁶) + 6
    g1 = ((7 − x)² + 0.1 (y + 8)²)/10 − 20,   g2 = ((x + 7)² + 0.1 (y + 8)²)/10 − 20
    ℓ1 = scale·(s f1 + t g1),                ℓ2 = s f2 + t g2

(``scale`` = 1 is CAGrad's problem; the Nash-MTL and FAMO scripts expose a factor on ℓ1 to make
the two losses imbalanced). Every run starts from the five published points and records every
step's θ; the published optimiser is Adam, lr 1e-3, 100,000 steps (the task's own budget is
smaller: conf/task/toy2d.yaml).

The Pareto set lies below the x axis, where ℓ_i = t(y)·(q_i(x) + h(y) − 20) with
q1 = (x − 7)²/10, q2 = (x + 7)²/10, h = 0.01 (y + 8)². For x ∈ [−7, 7] the weights w ∝ (x + 7,
7 − x) cancel the x components of the gradients, and the y components cancel where
t'(y)(Q(x) + h(y) − 20) + t(y) h'(y) = 0, Q = w1 q1 + w2 q2 = (49 − x²)/10: one root y*(x) per x
(near −8.36; CAGrad's figure draws y = −8.3552). ``pareto_set`` finds it by bisection to machine
precision and keeps the non-dominated points; distances to the front are measured against it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch

from moo_lightning.batches import StepBatches
from moo_lightning.combiners.base import Combiner
from moo_lightning.combiners.mgda import min_norm_weights
from moo_lightning.ensemble import EnsembleModule
from moo_lightning.gradients import gram_matrix, objective_grads

LOWER = 5e-6  # the published clamp inside the logs
# the five published starting points (Nash-MTL's experiments/toy; CAGrad's first three and two)
STARTS = ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))


# --- the functions ---------------------------------------------------------------------------


def toy2d_losses(theta: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """(ℓ1, ℓ2) of θ = (..., 2): shape (..., 2). Differentiable (autograd), any float dtype."""
    x, y = theta[..., 0], theta[..., 1]
    f1 = torch.log(torch.clamp((-0.5 * (x + 7) - torch.tanh(-y)).abs(), LOWER)) + 6
    f2 = torch.log(torch.clamp((-0.5 * (x - 3) + torch.tanh(-y) + 2).abs(), LOWER)) + 6
    g1 = ((7 - x) ** 2 + 0.1 * (y + 8) ** 2) / 10 - 20
    g2 = ((x + 7) ** 2 + 0.1 * (y + 8) ** 2) / 10 - 20
    s = torch.clamp(torch.tanh(0.5 * y), min=0)
    t = torch.clamp(torch.tanh(-0.5 * y), min=0)
    return torch.stack([scale * (s * f1 + t * g1), s * f2 + t * g2], dim=-1)


def losses_np(theta, scale: float = 1.0) -> np.ndarray:
    with torch.no_grad():
        return toy2d_losses(torch.as_tensor(np.asarray(theta, dtype=np.float64)), scale).numpy()


# --- the Pareto set and front ------------------------------------------------------------------


def _stationarity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The y component of the x-balanced combination of the gradients (zero on the set)."""
    t = np.tanh(-0.5 * y)
    dt = -0.5 * (1 - t**2)
    q = (49 - x**2) / 10
    h = 0.01 * (y + 8) ** 2
    return dt * (q + h - 20) + t * 0.02 * (y + 8)


def pareto_set(num: int = 4001) -> np.ndarray:
    """Points (x, y*(x)) of the Pareto set for x ∈ [−7, 7] (``num`` of them, increasing x), y* by
    bisection on [−20, −1] (the function changes sign there for every x). Shape (num, 2)."""
    x = np.linspace(-7.0, 7.0, num)
    lo, hi = np.full(num, -20.0), np.full(num, -1.0)
    f_lo = _stationarity(x, lo)
    if np.any(np.sign(f_lo) == np.sign(_stationarity(x, hi))):
        raise RuntimeError("pareto_set: the bracket [-20, -1] does not hold a root")
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        f_mid = _stationarity(x, mid)
        same = np.sign(f_mid) == np.sign(f_lo)
        lo, f_lo = np.where(same, mid, lo), np.where(same, f_mid, f_lo)
        hi = np.where(same, hi, mid)
    return np.stack([x, 0.5 * (lo + hi)], axis=1)


def pareto_front(num: int = 4001, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(set, front): the Pareto-set points and their losses, dominated points removed (none are,
    checked), ordered by increasing ℓ1."""
    pts = pareto_set(num)
    front = losses_np(pts, scale)
    keep = _non_dominated(front)
    order = np.argsort(front[keep, 0])
    return pts[keep][order], front[keep][order]


def _non_dominated(points: np.ndarray) -> np.ndarray:
    order = np.lexsort((points[:, 1], points[:, 0]))
    keep = np.zeros(len(points), dtype=bool)
    best = np.inf
    for i in order:
        if points[i, 1] < best:
            keep[i] = True
            best = points[i, 1]
    return keep


def distance_to(points: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point (K, 2) to the polyline ``curve`` (M, 2)."""
    a, b = curve[:-1], curve[1:]
    ab = b - a
    out = []
    for p in np.atleast_2d(points):
        u = np.clip(((p - a) * ab).sum(1) / np.maximum((ab**2).sum(1), 1e-300), 0.0, 1.0)
        out.append(float(np.sqrt((((a + u[:, None] * ab) - p) ** 2).sum(1)).min()))
    return np.array(out)


# --- Lightning pieces --------------------------------------------------------------------------


class Toy2DSteps(StepBatches):
    """No data: one dummy batch per optimisation step (``trainer.max_steps`` of them)."""


class Toy2DModule(EnsembleModule):
    """One θ ∈ ℝ² per starting point, stacked (starts, 2): the starts are independent members
    (each with its own combiner copy and state; Adam is elementwise, so one optimizer over the
    stack is one Adam per start), every member at the run's preference. ``offset`` is added to
    both losses the combiner sees (the log-loss combiners need ℓ > 0: 21 puts every loss above
    1); it moves no gradient, and everything recorded is of the unshifted losses. Records θ and the
    losses of every step; ``export`` writes them (``trajectory.npz``), the final points and
    their distances to the Pareto front and set, and a figure."""

    headline_metrics = ("final_g",)

    def __init__(
        self,
        combiner: Combiner,
        preference,
        starts=STARTS,
        scale: float = 1.0,
        offset: float = 0.0,
        record_every: int = 1,
        **kwargs,
    ):
        starts = np.asarray(starts, dtype=np.float64)
        if starts.ndim != 2 or starts.shape[1] != 2 or len(starts) < 1:
            raise ValueError(
                f"module.starts must be a list of (x, y) pairs. Found shape {starts.shape}"
            )
        if not scale > 0:
            raise ValueError(f"module.scale must be > 0. Found {scale}")
        if record_every < 1:
            raise ValueError(f"module.record_every must be >= 1. Found {record_every}")
        super().__init__(combiner, preference, members=len(starts), num_objectives=2, **kwargs)
        self.starts = starts
        self.scale = float(scale)
        self.offset = float(offset)
        self.record_every = int(record_every)
        self.thetas = torch.nn.Parameter(torch.tensor(starts, dtype=torch.float64))
        self.path: list[np.ndarray] = []  # θ of every recorded step (starts, 2)

    def objectives(self, batch) -> torch.Tensor:
        if torch.is_grad_enabled() and self.global_step % self.record_every == 0:
            self.path.append(self.thetas.detach().cpu().numpy().copy())
        return toy2d_losses(self.thetas, self.scale) + self.offset

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["toy2d_path"] = torch.from_numpy(np.stack(self.path)) if self.path else None

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("toy2d_path")
        self.path = list(saved.numpy()) if saved is not None else []

    def final_thetas(self) -> np.ndarray:
        return self.thetas.detach().cpu().numpy().copy()

    def final_stationarity(self) -> list[float]:
        """min_{w∈Δ} ‖Σ w_i ∇ℓ_i‖² at each final θ (0 at Pareto-stationary points)."""
        out = []
        for theta in self.final_thetas():
            p = torch.tensor(theta, requires_grad=True)
            grads = objective_grads(toy2d_losses(p, self.scale), [p])
            out.append(float(min_norm_weights(gram_matrix(grads).numpy())[1]))
        return out

    def export(self, run_dir: Path) -> dict:
        run_dir = Path(run_dir)
        final = self.final_thetas()
        thetas = np.concatenate([np.stack(self.path), final[None]]) if self.path else final[None]
        losses = losses_np(thetas, self.scale)  # (T, starts, 2)
        pset, front = pareto_front(scale=self.scale)
        final_losses = losses[-1]
        run_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            run_dir / "trajectory.npz", thetas=thetas, losses=losses, starts=self.starts
        )
        title = self.combiner.name
        plot_runs({title: (thetas, losses)}, run_dir / "trajectory.png", scale=self.scale)
        return {
            "starts": self.starts.tolist(),
            "scale": self.scale,
            "offset": self.offset,
            "final_thetas": final.tolist(),
            "final_losses": final_losses.tolist(),
            # Euclidean, in loss space to the front and in θ space to the Pareto set
            "front_distance": distance_to(final_losses, front).tolist(),
            "set_distance": distance_to(final, pset).tolist(),
            "final_g": self.final_stationarity(),
            "record_every": self.record_every,
        }


# --- figures -------------------------------------------------------------------------------------


def plot_runs(
    runs: dict,
    path: Path,
    scale: float = 1.0,
    columns: int = 4,
    notes: dict | None = None,
) -> None:
    """Two panels per run: θ paths over the contour of the mean loss (the Pareto set marked),
    and the loss paths (the Pareto front marked). ``runs``: title -> (thetas (T, K, 2), losses
    (T, K, 2)) or None (a panel that only shows ``notes[title]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = notes or {}
    pset, front = pareto_front(scale=scale)
    grid = np.linspace(-10, 10, 201)
    X, Y = np.meshgrid(grid, grid)
    Z = losses_np(np.stack([X, Y], -1), scale).mean(-1)
    n = len(runs)
    cols = min(columns, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(4.4 * cols, 2.3 * rows), squeeze=False)
    colours = [f"C{k}" for k in range(10)]
    for k, (title, run) in enumerate(runs.items()):
        ax_t, ax_l = axes[k // cols, 2 * (k % cols)], axes[k // cols, 2 * (k % cols) + 1]
        ax_t.contour(X, Y, Z, levels=20, cmap="Greys", linewidths=0.5)
        ax_t.plot(pset[:, 0], pset[:, 1], color="0.5", lw=3, alpha=0.6)
        ax_l.plot(front[:, 0], front[:, 1], color="0.5", lw=3, alpha=0.6)
        ax_t.set_title(title, fontsize=8, loc="left")
        if run is None:
            ax_l.text(
                0.5,
                0.5,
                textwrap.fill(notes.get(title, "no run"), 38),
                ha="center",
                va="center",
                fontsize=5,
                transform=ax_l.transAxes,
            )
        else:
            thetas, losses = run
            for j in range(thetas.shape[1]):
                c = colours[j % 10]
                ax_t.plot(thetas[:, j, 0], thetas[:, j, 1], color=c, lw=0.8)
                ax_t.scatter(*thetas[0, j], color=c, s=8, marker="o")
                ax_t.scatter(*thetas[-1, j], color=c, s=30, marker="*", zorder=3)
                ax_l.plot(losses[:, j, 0], losses[:, j, 1], color=c, lw=0.8)
                ax_l.scatter(*losses[-1, j], color=c, s=30, marker="*", zorder=3)
            if title in notes:
                ax_l.set_title(textwrap.shorten(notes[title], 45), fontsize=6, loc="left")
        ax_t.set_xlim(-10, 10)
        ax_t.set_ylim(-10, 10)
        ax_l.set_xlim(-21, 10)
        ax_l.set_ylim(-21, 10)
        for ax in (ax_t, ax_l):
            ax.tick_params(labelsize=5)
    for k in range(n, rows * cols):
        axes[k // cols, 2 * (k % cols)].axis("off")
        axes[k // cols, 2 * (k % cols) + 1].axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
