"""sweep/pareto_report.py on hand-made Multi-MNIST jobs: HV / IGD+ against hand values and an
independent 2-D computation, left-out jobs, the paired test, settings groups, missing trials."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import moocore
import numpy as np
import pytest
from scipy import stats

from tests.helpers import ROOT, load_script

pr = load_script("sweep/pareto_report.py")

LN10 = math.log(10)
NOTE = "built from the MNIST test split"


# independent 2-D references (minimisation), written without moocore
def hv_2d(points, ref):
    area, best_y = 0.0, ref[1]
    for x, y in sorted(map(tuple, points)):
        if x < ref[0] and y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area


def front_2d(points):
    pts = {tuple(p) for p in points}
    return [p for p in pts if not any(q != p and q[0] <= p[0] and q[1] <= p[1] for q in pts)]


def igd_plus_2d(points, front):
    def d(a, z):
        return math.hypot(max(a[0] - z[0], 0.0), max(a[1] - z[1], 0.0))

    return sum(min(d(a, z) for a in points) for z in front) / len(front)


def test_hand_values_and_moocore_agree():
    front = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hv_2d(front, (4, 4)) == 6.0  # 3·1 + 2·1 + 1·1
    hv, igd = pr.set_metrics(front, (4, 4), front)
    assert hv == pytest.approx(6.0) and igd == pytest.approx(0.0)
    # a point beyond the reference in one objective adds nothing; a dominated one neither
    beyond = np.vstack([front, [[5.0, 0.5], [3.5, 3.5]]])
    assert pr.set_metrics(beyond, (4, 4), front)[0] == pytest.approx(6.0)
    # IGD+ of {(2, 3)}: distances 1, 1 and 2 to the three front points -> 4/3
    hv, igd = pr.set_metrics(np.array([[2.0, 3.0]]), (4, 4), front)
    assert hv == pytest.approx(2.0) and igd == pytest.approx(4 / 3)
    assert igd_plus_2d([(2.0, 3.0)], front.tolist()) == pytest.approx(4 / 3)
    pooled = pr.pooled_front(np.vstack([beyond, [[2.0, 2.0]]]))
    assert sorted(map(tuple, pooled)) == sorted(front_2d(beyond.tolist()))
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 3, size=(7, 2))
    ref_front = rng.uniform(0, 3, size=(5, 2))
    hv, igd = pr.set_metrics(pts, (LN10, LN10), ref_front)
    assert hv == pytest.approx(hv_2d(pts, (LN10, LN10)))
    assert hv == pytest.approx(moocore.hypervolume(pts, ref=[LN10, LN10]))
    assert igd == pytest.approx(igd_plus_2d(pts.tolist(), ref_front.tolist()))
    assert igd == pytest.approx(moocore.igd_plus(pts, ref=ref_front))


def settings(method: str, seed: int, lr: float = 0.01, data_seed=None) -> dict:
    return {
        "seed": seed,
        "task": {"name": "multi_mnist"},
        "combiner": {"name": method},
        "data": {"seed": seed if data_seed is None else data_seed, "batch_size": 256},
        "optimizer": {"lr": lr},
        "members": 3,
    }


def png_job(s: int) -> dict:
    return {
        "method": "png",
        "combiner": "png",
        "preferences": [[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]],
        "test_losses": [[0.2 + 0.01 * s, 1.0], [0.5, 0.5 + 0.02 * s], [1.0, 0.2]],
        "test_errors": [[0.05, 0.30], [0.10, 0.10 + 0.01 * s], [0.30, 0.05]],
        "non_uniformity": None,
    }


def epo_job(s: int) -> dict:
    return {
        "method": "epo",
        "combiner": "epo",
        "preferences": [[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]],
        # the third member lies beyond the loss reference (2.5 > ln 10) but is on the pooled front
        "test_losses": [[0.3 + 0.02 * s, 0.9 + 0.05 * s], [0.6, 0.45 - 0.02 * s], [2.5, 0.1]],
        "test_errors": [[0.06, 0.28 + 0.01 * s], [0.12, 0.09], [0.95, 0.02]],
        "non_uniformity": [[0.01, 0.02, None], [0.03, 0.04, 0.05]][s],
    }


def write_job(root: Path, name: str, job: dict, seed: int, **extra) -> dict:
    m = {
        "task": "multi_mnist",
        "status": "ok",
        "complete": True,
        "seed": seed,
        "members": 3,
        "settings": settings(job["method"], seed, **extra.pop("settings_kw", {})),
        "source_note": NOTE,
        **job,
        **extra,
    }
    (root / name).mkdir(parents=True)
    (root / name / "metrics.json").write_text(json.dumps(m))
    return m


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    for s in range(3):
        write_job(root, f"png/s{s}", png_job(s), s)
    for s in range(2):  # EPO misses trial 2
        write_job(root, f"epo/s{s}", epo_job(s), s)
    bad = epo_job(0) | {"test_losses": [[0.0, 0.0]] * 3}  # would win everything if counted
    write_job(root, "epo/s0_again", bad, 0)
    write_job(root, "left/incomplete", bad, 2, complete=False)
    write_job(root, "left/diverged", bad, 2, status="diverged", status_reason="NaN weights")
    write_job(root, "left/other_task", bad, 2, task="sst2")
    write_job(root, "left/short", bad | {"test_losses": [[0.1, 0.1]] * 2}, 2)
    (root / "left/broken").mkdir()
    (root / "left/broken/metrics.json").write_text('{"complete": tr')
    write_job(root, "left/nan", bad | {"test_errors": "NaN"}, 2)  # patched to a bare NaN below
    text = (root / "left/nan/metrics.json").read_text().replace('"NaN"', "NaN")
    (root / "left/nan/metrics.json").write_text(text)
    return root


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _oracle(job: dict, fronts: dict) -> dict:
    out = {}
    for space, key, ref in (
        ("loss", "test_losses", (LN10, LN10)),
        ("error", "test_errors", (0.9,) * 2),
    ):
        out[f"hv_{space}"] = hv_2d(job[key], ref)
        out[f"igd_{space}"] = igd_plus_2d(job[key], fronts[space])
    return out


def test_report_end_to_end(sweep, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "sweep/pareto_report.py", str(sweep), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("table.md", "table.csv", "runs.csv", "loss_space.png"):
        assert (out / name).stat().st_size > 0
    printed = proc.stdout

    # left out and listed, each with its reason; none of their numbers enter anything
    assert "- epo/s0_again: duplicate of epo/s0 (same method, settings and seed)" in printed
    assert "- left/incomplete: incomplete" in printed
    assert "- left/diverged: status diverged: NaN weights" in printed
    assert "- left/other_task: not a multi_mnist run (task 'sst2')" in printed
    assert "- left/short: test_losses is not 3 rows of 2 finite numbers" in printed
    assert "- left/broken: unreadable metrics.json (JSONDecodeError: " in printed
    # a bare NaN reads (one rule for every report, sweeps.load_runs); the field check names it
    assert "- left/nan: test_errors is not 3 rows of 2 finite numbers" in printed
    assert "Left out (7):" in printed
    assert f"Data: {NOTE}." in printed

    runs = _csv(out / "runs.csv")
    assert len(runs) == 5 * 3
    assert {r["folder"] for r in runs} == {"png/s0", "png/s1", "png/s2", "epo/s0", "epo/s1"}

    # independent numbers: pooled fronts of all kept members, per-job HV / IGD+, mean ± std
    jobs = {("png", s): png_job(s) for s in range(3)} | {("epo", s): epo_job(s) for s in range(2)}
    fronts = {
        "loss": front_2d([p for j in jobs.values() for p in j["test_losses"]]),
        "error": front_2d([p for j in jobs.values() for p in j["test_errors"]]),
    }
    assert (2.5, 0.1) in fronts["loss"]  # beyond the reference, still on the front
    per_job = {k: _oracle(j, fronts) for k, j in jobs.items()}
    table = {r["row"]: r for r in _csv(out / "table.csv")}
    assert set(table) == {"epo", "png"}
    assert (table["png"]["n"], table["epo"]["n"]) == ("3", "2")  # EPO reported with its n
    for method, seeds in (("png", range(3)), ("epo", range(2))):
        for m in pr.METRICS:
            vals = [per_job[(method, s)][m] for s in seeds]
            assert float(table[method][f"{m}_mean"]) == pytest.approx(np.mean(vals), rel=1e-9)
            assert float(table[method][f"{m}_std"]) == pytest.approx(np.std(vals, ddof=1))
    # paired against PNG on seeds 0 and 1, exactly scipy's p
    for m in pr.METRICS:
        x = [per_job[("epo", s)][m] for s in range(2)]
        y = [per_job[("png", s)][m] for s in range(2)]
        assert float(table["epo"][f"p_{m}"]) == pytest.approx(stats.ttest_rel(x, y).pvalue)
        assert table["png"][f"p_{m}"] == ""
    assert float(table["epo"]["mu_mean"]) == pytest.approx(0.03)  # 5 finite μ of 6 members
    assert table["png"]["mu_mean"] == ""

    md = (out / "table.md").read_text()
    hv = [per_job[("epo", s)]["hv_loss"] for s in range(2)]
    p = stats.ttest_rel(hv, [per_job[("png", s)]["hv_loss"] for s in range(2)]).pvalue
    cell = f"{100 * np.mean(hv):.2f} ± {100 * np.std(hv, ddof=1):.2f}"
    assert f"| epo | 3 | 2 | {cell} |" in md and f"| {p:.3f} |" in md
    assert "(2.3026, 2.3026) = (ln 10, ln 10)" in md and "(0.9, 0.9)" in md
    assert "the true Pareto front is unknown" in md
    assert "- epo: seeds [0, 1], missing [2] of [0, 1, 2]" in md


def test_runs_with_other_settings_are_separate_rows(tmp_path, capsys):
    root, out = tmp_path / "sweep", tmp_path / "out"
    ls = png_job(0) | {"method": "ls", "combiner": "ls"}
    # a data seed fixed to 7 is a setting, shared by both trials: they are averaged together
    for s in range(2):
        write_job(root, f"ls_lr001/s{s}", ls, s, settings_kw={"data_seed": 7})
    write_job(root, "ls_lr01/s0", epo_job(0) | {"method": "ls"}, 0, settings_kw={"lr": 0.1})
    pr.main([str(root), "--out", str(out)])
    printed = capsys.readouterr().out
    table = {r["row"]: r for r in _csv(out / "table.csv")}
    assert set(table) == {"ls [1]", "ls [2]"}
    assert (table["ls [1]"]["n"], table["ls [2]"]["n"]) == ("2", "1")
    assert table["ls [2]"]["hv_loss_std"] == ""  # one trial: no std
    assert "- ls [2] differs from ls [1] in: data.seed: 7 → (absent); optimizer.lr: 0.01 → 0.1" in (
        printed
    )
    assert "p: — (no single PNG row to pair with)" in printed
    runs = _csv(out / "runs.csv")
    assert {r["folder"] for r in runs if r["row"] == "ls [2]"} == {"ls_lr01/s0"}


def test_no_usable_job_is_an_error_that_lists_why(tmp_path):
    root = tmp_path / "sweep"
    write_job(root, "only", png_job(0), 0, status="no_steps")
    with pytest.raises(SystemExit, match="(?s)no usable multi_mnist jobs.*- only: status no_steps"):
        pr.main([str(root), "--out", str(tmp_path / "out")])
