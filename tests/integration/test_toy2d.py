"""The CAGrad / Nash-MTL two-dimensional toy: its Pareto set, a short job through train.py, and
the figure script on a tiny sweep."""

import importlib.util
import json

import numpy as np
import torch

from moo_lightning.combiners.mgda import min_norm_weights
from moo_lightning.gradients import gram_matrix, objective_grads
from moo_lightning.tasks.toy2d import STARTS, losses_np, pareto_front, pareto_set, toy2d_losses
from tests.helpers import ROOT


def _figure_script():
    spec = importlib.util.spec_from_file_location("toy2d_figure", ROOT / "sweep/toy2d_figure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_published_functions_at_known_points():
    # (0, 0): both gates tanh(±y/2) are 0, so both losses are 0
    assert np.allclose(losses_np([0.0, 0.0]), 0.0)
    # deep in the lower half (tanh(4) ≈ 1): the quadratic bowls, minimum -20 at (±7, -8)
    t = np.tanh(4.0)
    assert np.allclose(losses_np([7.0, -8.0]), [t * -20.0, t * (19.6 - 20.0)])
    # in the upper half the log valley of loss 1 sits at x = -7 + 2 tanh(y) (clamped at 5e-6)
    y = 3.0
    assert np.isclose(losses_np([-7 + 2 * np.tanh(y), y])[0], np.tanh(y / 2) * (np.log(5e-6) + 6))
    assert len(STARTS) == 5


def test_the_pareto_set_is_pareto_stationary_and_its_front_non_dominated():
    pts = pareto_set(201)
    # CAGrad's figure draws the set at y = -8.3552; the exact set bends slightly with x
    assert abs(pts[100, 1] - (-8.3552)) < 1e-3 and np.all(np.abs(pts[:, 1] + 8.4) < 0.1)
    for x, y in pts[::20]:
        theta = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
        grads = objective_grads(toy2d_losses(theta), [theta])
        assert min_norm_weights(gram_matrix(grads).numpy())[1] < 1e-14  # gradients ~ 1
    _, front = pareto_front(201)
    assert len(front) == 201  # no sampled point is dominated
    assert np.all(np.diff(front[:, 0]) > 0) and np.all(np.diff(front[:, 1]) < 0)


def test_a_short_job_through_train_py_and_the_figure_script(run_train, tmp_path, capsys):
    runs = [
        run_train("task=toy2d", "combiner=mgda", "data.steps=15", "logger=none"),
        run_train(
            "task=toy2d", "combiner=famo", "data.steps=15", "module.offset=21", "logger=none"
        ),
    ]
    for m in runs:
        assert m["status"] == "ok" and m["steps"] == 15 and len(m["final_thetas"]) == 5
        traj = np.load(f"{m['run_dir']}/trajectory.npz")
        assert traj["thetas"].shape == (16, 5, 2) and np.allclose(traj["thetas"][0], STARTS)
        assert np.allclose(traj["losses"][-1], m["final_losses"])  # unshifted losses
        assert len(m["front_distance"]) == 5 and min(m["front_distance"]) > 0
    assert runs[0]["preference"] is None and runs[1]["offset"] == 21
    # a job that failed: a folder with a log and no metrics.json
    failed = tmp_path / "combiner=gls,sweep=toy2d"
    failed.mkdir()
    (failed / "train.log").write_text("[x][ERROR] - moo_lightning.combiners.base.SolverError: gls")
    out = tmp_path / "fig" / "toy2d.png"
    assert _figure_script().main([str(tmp_path), "--out", str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 10_000
    text = out.with_suffix(".md").read_text()
    assert "| mgda | 0/5 |" in text and "| famo (ℓ+21) |" in text
    assert "- gls: " in text and "SolverError" in text
    rows = out.with_suffix(".csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 5
    assert json.loads((tmp_path.glob("*mgda*/metrics.json").__next__()).read_text())["task"]
