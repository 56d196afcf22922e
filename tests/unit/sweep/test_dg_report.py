"""sweep/dg_report.py on hand-made jobs: per-target mean ± std, the per-trial average, the
paired t-test against JiGen, the stand-in note on the table, and PNG's per-step figure."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ttest_rel

from tests.helpers import load_script

dg_report = load_script("sweep/dg_report.py")

ACC = {  # method -> target -> per-seed accuracies
    "jigen": {"0": [0.80, 0.82, 0.81], "15": [0.90, 0.91, 0.93]},
    "jigen_png": {"0": [0.83, 0.84, 0.82], "15": [0.92, 0.91, 0.95]},
}


def _write(root: Path) -> None:
    for method, per_target in ACC.items():
        for target, accs in per_target.items():
            for seed, acc in enumerate(accs):
                job = root / method / f"data.target={target},seed={seed}"
                job.mkdir(parents=True)
                m = {"complete": True, "status": "ok", "method": method, "target": target,
                     "seed": seed, "test/acc": acc, "val/acc_best": 0.9,
                     "source_note": "a stand-in"}  # fmt: skip
                (job / "metrics.json").write_text(json.dumps(m))
                if method == "jigen_png":
                    (job / "csv").mkdir()
                    head = "step,train/loss_0,train/loss_1,train/combiner/lambda_0,"
                    head += "train/combiner/lambda_1,train/criterion,train/discriminator_loss"
                    lines = [head]
                    lines += [f"{s},{2 - s / 10},{3 - s / 10},0.5,0.1,-0.6,0.6" for s in range(10)]
                    (job / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    bad = root / "jigen" / "diverged"
    bad.mkdir()
    (bad / "metrics.json").write_text(json.dumps({"complete": True, "status": "diverged",
                                                  "method": "jigen", "target": "0",
                                                  "seed": 9}))  # fmt: skip


def test_the_table_and_the_figure(tmp_path, capsys):
    _write(tmp_path / "sweep")
    dg_report.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    tab = {
        r["method"]: r
        for r in dg_report.table(dg_report.load(tmp_path / "sweep")[0]).to_dict("records")
    }
    png, jig = tab["jigen_png"], tab["jigen"]
    assert png["0_mean"] == pytest.approx(np.mean(ACC["jigen_png"]["0"]))
    assert png["0_std"] == pytest.approx(np.std(ACC["jigen_png"]["0"], ddof=1))
    avg = (np.array(ACC["jigen_png"]["0"]) + np.array(ACC["jigen_png"]["15"])) / 2
    assert png["avg_mean"] == pytest.approx(avg.mean()) and png["n"] == 3
    assert png["avg_std"] == pytest.approx(avg.std(ddof=1))
    want = ttest_rel(ACC["jigen_png"]["0"] + ACC["jigen_png"]["15"],
                     ACC["jigen"]["0"] + ACC["jigen"]["15"]).pvalue  # fmt: skip
    assert png["p_vs_jigen"] == pytest.approx(want)
    assert jig["p_vs_jigen"] is None or np.isnan(jig["p_vs_jigen"])
    md = (tmp_path / "out" / "table.md").read_text()
    assert "Data: a stand-in" in md and "| JiGen + PNG | 83.00 ± 1.00 |" in md
    assert (tmp_path / "out" / "png_steps.png").stat().st_size > 10_000
    assert "diverged" in capsys.readouterr().out  # left out, and said so
