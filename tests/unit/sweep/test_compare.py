"""sweep/compare.py: a table of methods on any task's sweep (Δm%, paired p, BH q)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.helpers import ROOT

LS = {"test/mse_0": [0.10, 0.12, 0.11], "test/mse_1": [0.20, 0.20, 0.23]}
MGDA = {"test/mse_0": [0.09, 0.10, 0.10], "test/mse_1": [0.22, 0.21, 0.24]}


def fake(
    root: Path,
    combiner: str,
    seed: int,
    values: dict,
    lr: float = 0.01,
    module: str = "my_tasks.NotOnThePath",
) -> None:
    d = root / f"combiner={combiner},lr={lr},seed={seed}"
    d.mkdir(parents=True)
    m = {
        "task": "two_targets", "status": "ok", "complete": True, "combiner": combiner,
        "method": combiner, "seed": seed, "wall_time_s": 2.0, **values,
        "settings": {
            "module": {"_target_": module},
            "combiner": {"_target_": f"pkg.{combiner}"},
            "optimizer": {"lr": lr},
            "seed": seed,
        },
    }  # fmt: skip
    (d / "metrics.json").write_text(json.dumps(m))


def _compare(sweep: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "sweep/compare.py", str(sweep), "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip


def test_delta_m_and_its_paired_p_by_hand(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    for s in range(3):
        fake(sweep, "ls", s, {k: v[s] for k, v in LS.items()})
        fake(sweep, "mgda", s, {k: v[s] for k, v in MGDA.items()})
        fake(sweep, "mgda", s, {k: v[s] + 0.5 for k, v in MGDA.items()}, lr=0.1)  # a variant
    fake(sweep, "upgrad", 0, {k: v[0] for k, v in LS.items()})  # one seed of three
    fake(sweep, "ls", 0, {k: v[0] for k, v in LS.items()}, lr=0.1)  # the baseline's, incomplete
    proc = _compare(sweep, out)  # the runs' module does not import: its directions are unknown
    assert proc.returncode == 1 and "my_tasks.NotOnThePath does not import here" in proc.stderr
    proc = _compare(sweep, out, "--smaller", "test/mse_0,test/mse_1")
    assert proc.returncode == 0, proc.stderr
    # both MSEs: smaller is better, so Δm counts a fall as a gain
    ls = {k: np.mean(v) for k, v in LS.items()}
    per_seed = 50 * sum(
        -(np.array(MGDA[k]) - np.array(LS[k])) / ls[k] for k in ("test/mse_0", "test/mse_1")
    )
    rows = {r["row"]: r for r in csv.DictReader(open(out / "table.csv"))}
    assert float(rows["mgda [1]"]["delta_m"]) == pytest.approx(per_seed.mean())
    assert float(rows["mgda [1]"]["p"]) == pytest.approx(stats.ttest_1samp(per_seed, 0).pvalue)
    assert float(rows["mgda [1]"]["p_test/mse_0"]) == pytest.approx(
        stats.ttest_rel(MGDA["test/mse_0"], LS["test/mse_0"]).pvalue
    )
    assert float(rows["mgda [2]"]["delta_m"]) < -100  # every MSE 0.5 larger
    table = (out / "table.md").read_text()
    assert table.splitlines()[0].startswith("| method | test/mse_0 ↓ | test/mse_1 ↓ | Δm% vs ls |")
    assert table.splitlines()[2].startswith("| ls [1] | 0.11 ± 0.01 |")  # the baseline first
    assert "- mgda [2]: optimizer.lr=0.1" in table
    # the baseline is the complete ls row, and the table says which of ls's settings it ran
    assert "- ls [1]: optimizer.lr=0.01" in table and "| ls [2] |" not in table
    assert "- upgrad: seeds [0] of [0, 1, 2]" in table and "| upgrad |" not in table
    assert "over the table's 2 comparisons" in table


def test_directions_metrics_and_a_missing_baseline(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    base = "moo_lightning.module.MultiObjectiveModule"  # imports: its rules decide
    for s in range(2):
        fake(sweep, "ls", s, {"test/f1": 0.5 + s / 10, "test/mse_0": 0.1}, module=base)
        fake(sweep, "mgda", s, {"test/f1": 0.6 + s / 10, "test/mse_0": 0.1}, module=base)
    proc = _compare(sweep, out)  # F1's direction is not known to the module's rules
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0
    assert "whether larger test/f1 is better is not known" in proc.stderr
    assert "--larger or --smaller" in proc.stderr
    proc = _compare(sweep, out, "--larger", "test/f1", "--metrics", "test/f1")
    assert proc.returncode == 0, proc.stderr
    rows = {r["row"]: r for r in csv.DictReader(open(out / "table.csv"))}
    assert float(rows["mgda"]["delta_m"]) == pytest.approx(100 * 0.1 / 0.55)
    proc = _compare(sweep, out, "--larger", "test/f1", "--baseline", "pcgrad")
    assert (
        proc.returncode == 0
        and "No Δm or p: no single complete row of method 'pcgrad'"
        in (out / "table.md").read_text()
    )
    proc = _compare(sweep, out, "--metrics", "test/acc")
    assert proc.returncode == 1 and "--metrics test/acc: no run records it" in proc.stderr
    proc = _compare(sweep, out, "--seeds", "5-6", "--larger", "test/f1")
    assert (
        proc.returncode == 1
        and "no run under" in proc.stderr
        and "seed 0 is not one of --seeds 5, 6" in proc.stderr
    )
    proc = _compare(sweep, out, "--seeds", "9-1")  # argparse's refusal: the option, the forms
    assert proc.returncode == 2 and "argument --seeds: '9-1': expected seeds such as 0-9" in (
        proc.stderr
    )
