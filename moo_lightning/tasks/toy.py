"""The synthetic two-objective problem (Lin et al., NeurIPS 2019, §5): its exact Pareto
front, quality indicators, Lightning modules (single model and PNG energy ensemble) and plots.

ℓ1(θ) = 1 − exp(−‖θ − η‖²), ℓ2(θ) = 1 − exp(−‖θ + η‖²), η = n^{-1/2}·1. The Pareto set is
θ = tη, t ∈ [−1, 1], so the front is (1 − exp(−(t − 1)²), 1 − exp(−(t + 1)²)) for any n.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import moocore
import numpy as np
import torch

from moo_lightning.batches import StepBatches
from moo_lightning.combiners.base import Combiner, as_preference
from moo_lightning.combiners.mgda import min_norm_weights
from moo_lightning.ensemble import EnsembleModule
from moo_lightning.gradients import gram_matrix, objective_grads
from moo_lightning.module import MultiObjectiveModule

REFERENCE_POINT = (1.0, 1.0)


# --- the exact front ------------------------------------------------------------------------------


def front_point(t) -> np.ndarray:
    """Loss vector(s) of the Pareto-set point θ = tη, t ∈ [−1, 1]. Shape (..., 2)."""
    t = np.asarray(t, dtype=np.float64)
    return np.stack([1 - np.exp(-((t - 1) ** 2)), 1 - np.exp(-((t + 1) ** 2))], axis=-1)


def exact_front(num: int = 2001) -> np.ndarray:
    """A dense sampling of the exact front, ordered by increasing ℓ1. Shape (num, 2)."""
    return front_point(np.linspace(1.0, -1.0, num))


def ray_point(preference) -> np.ndarray:
    """The front point where r1ℓ1 = r2ℓ2 (EPO's target for preference r), by bisection on t."""
    r = as_preference(preference, 2)
    lo, hi = -1.0, 1.0  # r1ℓ1 − r2ℓ2 decreases in t on the Pareto set
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        l1, l2 = front_point(mid)
        if r[0] * l1 - r[1] * l2 > 0:
            lo = mid
        else:
            hi = mid
    return front_point(0.5 * (lo + hi))


def minimise_on_front(criterion: Callable, preference, num: int = 200_001) -> np.ndarray:
    """argmin of criterion(ℓ, r) over a dense sampling of the exact front (grid step 1e-5 in t)."""
    pts = torch.as_tensor(front_point(np.linspace(-1.0, 1.0, num)))
    r = torch.as_tensor(as_preference(preference, 2))
    try:  # criteria written with tensor operations vectorise over the sampled points
        values = torch.vmap(lambda p: criterion(p, r))(pts)
    except RuntimeError:  # .item() or Python branching on values: one point at a time
        values = torch.stack([torch.as_tensor(criterion(p, r)) for p in pts])
    return pts[int(torch.argmin(values))].numpy()


def hypervolume(points, ref=REFERENCE_POINT) -> float:
    return float(moocore.hypervolume(np.atleast_2d(points), ref=np.asarray(ref, dtype=float)))


def igd_plus(points, front: np.ndarray | None = None) -> float:
    front = exact_front() if front is None else front
    return float(moocore.igd_plus(np.atleast_2d(points), ref=front))


def best_hypervolume(k: int, ref=REFERENCE_POINT, num: int = 2001) -> float:
    """The largest hypervolume any k points of the exact front reach (dynamic programming over a
    grid of ``num`` front points; exact up to the grid)."""
    pts = exact_front(num)  # increasing ℓ1, decreasing ℓ2
    x, y = pts[:, 0], pts[:, 1]
    rx, ry = ref
    # best[j] = max HV of a chain of points ending at point j, measured up to x_j's right edge
    # chain HV = Σ (x_{next} − x_i)(ry − y_i); adding j after i contributes (x_j − x_i)(ry − y_i)
    best = np.zeros(num)  # chains of one point: nothing counted yet
    for _ in range(k - 1):
        gain = (x[None, :] - x[:, None]) * (ry - y[:, None])  # [i, j]: i before j
        gain[np.tril_indices(num)] = -np.inf
        best = np.max(best[:, None] + gain, axis=0)
    return float(np.max(best + (rx - x) * (ry - y)))


# --- Lightning pieces ---------------------------------------------------------------------------


def _toy_losses(theta: torch.Tensor) -> torch.Tensor:
    eta = torch.full_like(theta, theta.shape[-1] ** -0.5)
    l1 = 1 - torch.exp(-((theta - eta) ** 2).sum(-1))
    l2 = 1 - torch.exp(-((theta + eta) ** 2).sum(-1))
    return torch.stack([l1, l2], dim=-1)


def default_start(n: int, mirrored: bool = False) -> np.ndarray:
    """The documented start, off the front: θ0 = 0.3·η + 0.8·u, u ⊥ η a unit vector with
    alternating signs; its losses are (0.677, 0.903). ``mirrored`` flips η's coefficient
    (θ0 = −0.3·η + 0.8·u, losses (0.903, 0.677))."""
    eta = np.full(n, n**-0.5)
    u = np.array([(-1.0) ** i for i in range(n)])
    u -= u.mean()
    u /= np.linalg.norm(u)
    return (-0.3 if mirrored else 0.3) * eta + 0.8 * u


class ToySteps(StepBatches):
    """The toy problem has no data: one empty batch per step of ``trainer.max_steps``."""


class _Trajectory:
    """The loss trajectory (one row per step) a toy run records for its figure, saved in and
    restored from checkpoints."""

    trajectory: list[np.ndarray]

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["toy_trajectory"] = [torch.from_numpy(t) for t in self.trajectory]

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        self.trajectory = [t.numpy() for t in checkpoint.get("toy_trajectory", [])]


class ToyModule(_Trajectory, MultiObjectiveModule):
    """θ ∈ ℝⁿ on the synthetic problem; records the loss trajectory for the figure."""

    headline_metrics = ("final_g",)

    def __init__(
        self,
        combiner: Combiner,
        preference,
        n: int = 10,
        start: str | list[float] = "default",
        **kwargs,
    ):
        super().__init__(combiner, preference, num_objectives=2, **kwargs)
        if isinstance(start, str):
            if start not in ("default", "mirrored"):
                raise ValueError(
                    f"module.start must be 'default', 'mirrored' or a list of n={n} numbers. "
                    f"Found {start!r}"
                )
            theta0 = default_start(n, mirrored=start == "mirrored")
        else:
            theta0 = np.asarray(start, dtype=np.float64)
        if theta0.shape != (n,):
            raise ValueError(f"module.start must have n={n} entries. Found {theta0.shape}")
        self.theta = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
        self.trajectory: list[np.ndarray] = []

    def objectives(self, batch) -> torch.Tensor:
        losses = _toy_losses(self.theta)
        if torch.is_grad_enabled():  # a training step's losses, not a recomputation after it
            self.trajectory.append(losses.detach().cpu().numpy().copy())
        return losses

    def final_losses(self) -> np.ndarray:
        with torch.no_grad():
            return _toy_losses(self.theta).cpu().numpy()

    def final_stationarity(self) -> float:
        """g(θ) = min_{w∈Δ} ‖Σ w_i ∇ℓ_i‖² at the final θ (0 exactly on the Pareto set)."""
        theta = self.theta.detach().clone().requires_grad_(True)
        grads = objective_grads(_toy_losses(theta), [theta])
        return min_norm_weights(gram_matrix(grads).numpy())[1]

    def export(self, run_dir: Path) -> dict:
        """metrics.json entries and the loss-space figure for a finished run."""
        final = self.final_losses()
        traj = np.vstack([*self.trajectory, final])[None]
        plot_trajectories(traj, Path(run_dir) / "trajectory.png", self._title(), self.preference)
        return {
            "final_losses": final.tolist(),
            "final_g": self.final_stationarity(),
        }

    def _title(self) -> str:
        r = ", ".join(f"{v:.2f}" for v in self.preference)
        return f"{self.combiner.name.upper()}, preference ({r})"


class ToyEnsembleModule(_Trajectory, EnsembleModule):
    """N models θ_1..θ_N (one (N, n) parameter) trained jointly by PNG on the energy distance of
    their loss vectors (Ye & Liu 2022, eqs 5–6): each member's ∂F/∂ℓ depends on the others'
    current losses, and each member takes its own PNG step. ``start='clustered'`` puts all
    members near the default start; ``start='extremes'`` splits them between the two LS
    solutions (θ = ±η).

    ``criterion='energy'`` is the paper's energy distance; ``criterion='hypervolume'`` descends
    −HV of the members' losses (reference point (1, 1)) instead. On this front the energy's
    equilibrium puts two members at the ends, which caps its hypervolume near 91% of the best
    five-point value; the hypervolume criterion targets that value directly."""

    headline_metrics = ("hv_ratio",)

    def __init__(
        self,
        combiner: Combiner,
        preference,
        n: int = 10,
        members: int = 5,
        start: str = "clustered",
        spread: float = 0.05,
        criterion: str = "energy",
        bound_criterion_grad: bool = True,
        seed: int = 0,
        **kwargs,
    ):
        if members < 2:
            raise ValueError(f"module.members must be >= 2 for an ensemble. Found {members}")
        if criterion not in ("energy", "hypervolume"):
            raise ValueError(
                f"module.criterion must be 'energy' or 'hypervolume'. Found {criterion!r}"
            )
        if start not in ("clustered", "extremes"):
            raise ValueError(f"module.start must be 'clustered' or 'extremes'. Found {start!r}")
        super().__init__(
            combiner,
            preference,
            members=members,
            criterion=criterion,
            criterion_reference=REFERENCE_POINT,
            bound_criterion_grad=bound_criterion_grad,
            num_objectives=2,
            **kwargs,
        )
        rng = np.random.default_rng(seed)
        eta = np.full(n, n**-0.5)
        if start == "clustered":
            centres = np.repeat(default_start(n)[None], members, axis=0)
        else:
            centres = np.array([eta if j % 2 == 0 else -eta for j in range(members)])
        theta0 = centres + spread * rng.standard_normal((members, n)) / np.sqrt(n)
        self.thetas = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
        self.trajectory: list[np.ndarray] = []
        self.start = start

    def objectives(self, batch) -> torch.Tensor:
        losses = _toy_losses(self.thetas)
        self.trajectory.append(losses.detach().cpu().numpy().copy())
        return losses

    def final_losses(self) -> np.ndarray:
        with torch.no_grad():
            return _toy_losses(self.thetas).cpu().numpy()

    def export(self, run_dir: Path) -> dict:
        final = self.final_losses()
        traj = np.concatenate([np.stack(self.trajectory), final[None]]).transpose(1, 0, 2)
        plot_trajectories(
            traj,
            Path(run_dir) / "trajectory.png",
            f"PNG {self.criterion} ensemble, {self.start} start",
        )
        best = best_hypervolume(len(final))
        hv = hypervolume(final)
        return {
            "final_losses": final.tolist(),
            "hv": hv,
            "hv_best_possible": best,
            "hv_ratio": hv / best,
            "igd_plus": igd_plus(final),
            "criterion": self.criterion,
            "start": self.start,
            "reference_point": list(REFERENCE_POINT),
        }


def plot_trajectories(trajectories: np.ndarray, path: Path, title: str, preference=None) -> None:
    """Loss-space paths (K, T, 2) over the exact front; start marked o, end marked *; with a
    ``preference``, its ray r1ℓ1 = r2ℓ2 (where EPO, and PNG with its default criterion, end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    front = exact_front()
    ax.plot(front[:, 0], front[:, 1], color="0.6", lw=2, label="exact Pareto front")
    if preference is not None:
        r1, r2 = np.asarray(preference, dtype=float)[:2]
        slope = r1 / r2  # the ray ℓ2 = (r1 / r2) ℓ1
        end = min(1.02, 1.02 / slope)
        ax.plot(
            [0, end],
            [0, slope * end],
            ls="--",
            color="0.3",
            lw=1,
            label=f"preference ray r = ({r1:.2f}, {r2:.2f})",
        )
    many = len(trajectories) > 1
    for k, path_k in enumerate(trajectories):
        label = None if k else (f"{len(trajectories)} members" if many else "trajectory")
        line = ax.plot(path_k[:, 0], path_k[:, 1], lw=1, label=label)[0]
        ax.scatter(*path_k[0], marker="o", color=line.get_color(), s=20)
        ax.scatter(*path_k[-1], marker="*", color=line.get_color(), s=90, zorder=3)
    ax.set_xlabel(r"$\ell_1$")
    ax.set_ylabel(r"$\ell_2$")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
