"""sweep=combiners_mm as a tiny multirun (2 combiners × 2 seeds on the offline digits) and the
league-table script on it; the table's arithmetic on hand-made runs; the SST-2 preset composes."""

import csv
import importlib.util
import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from tests.helpers import CONF, ROOT, write_digits


def _table_script():
    spec = importlib.util.spec_from_file_location(
        "combiner_table", ROOT / "sweep/combiner_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = (
    "data.num_train=128",
    "data.num_val=64",
    "data.num_test=128",
    "data.batch_size=64",
    "data.eval_batch_size=64",
    "trainer.max_epochs=1",
    "logger=none",
)


def test_the_preset_is_every_combiner_one_model_equal_preference():
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=["sweep=combiners_mm"], return_hydra_config=True)
    assert cfg.task_name == "multi_mnist" and cfg.module.members == 1
    assert cfg.module.preferences == "spread"  # one member: (0.5, 0.5)
    assert cfg.save_model is False and list(cfg.callbacks) == ["task_accuracy"]
    params = cfg.hydra.sweeper.params
    assert params.combiner == "glob(*)" and params.seed == "range(0,5)"
    assert cfg.hydra.sweep.dir == "multirun/combiners_mm"
    with initialize_config_dir(CONF, version_base="1.3"):
        sst = compose("train", overrides=["sweep=combiners_sst2"], return_hydra_config=True)
    assert (sst.task_name, sst.data.num_train) == ("sst2", 20)
    assert "minilm" in sst.module.encoder.name.lower() and list(sst.preference) == [0.5, 0.5]
    assert sst.hydra.sweeper.params.seed == "range(0,10)"


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_a_tiny_combiners_mm_multirun_and_its_table(tmp_path):
    digits = write_digits(tmp_path / "mnist")
    sweep = tmp_path / "sweep"
    args = [sys.executable, "train.py", "-m", "sweep=combiners_mm", f"data.path={digits}"]
    args += ["combiner=ls,upgrad", "seed=0,1", f"hydra.sweep.dir={sweep}", *TINY]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(runs) == 4
    for m in runs:
        assert m["members"] == 1 and m["preferences"] == [[pytest.approx(0.5), 0.5]]
        # the callback's scalars agree with the recorded errors
        assert m["test/acc_1"] == pytest.approx(1 - m["test_errors"][0][0], abs=1e-6)
        assert m["test/acc_2"] == pytest.approx(1 - m["test_errors"][0][1], abs=1e-6)
        assert "model" not in m  # save_model=false
    (sweep / "broken").mkdir()
    (sweep / "broken" / "metrics.json").write_text("{")
    out = tmp_path / "report"
    assert _table_script().main([str(sweep), "--out", str(out)]) == 0
    text = (out / "table.md").read_text()
    assert text.index("| ls |") < text.index("| upgrad |") and "Left out (1)" in text
    rows = {r["row"]: r for r in csv.DictReader(open(out / "table.csv"))}
    assert set(rows) == {"ls", "upgrad"} and rows["ls"]["n"] == "2"
    assert float(rows["ls"]["delta_m"]) == 0.0
    assert len(list(csv.DictReader(open(out / "runs.csv")))) == 4


def _job(folder, combiner, seed, e1, e2, wall=10.0, **extra):
    folder.mkdir(parents=True)
    m = {
        "task": "multi_mnist",
        "status": "ok",
        "complete": True,
        "members": 1,
        "combiner": combiner,
        "seed": seed,
        "test_errors": [[e1, e2]],
        "val/error_mean": (e1 + e2) / 2,
        "wall_time_s": wall,
        "settings": {"seed": seed, "combiner": {"_target_": combiner}, "data": {"seed": 20180}},
    } | extra
    (folder / "metrics.json").write_text(json.dumps(m))


def test_delta_m_p_values_and_left_out_runs(tmp_path):
    for s in range(3):
        _job(tmp_path / f"ls{s}", "ls", s, 0.10, 0.20 + 0.01 * s)
        # task 1: accuracy 0.95 against 0.90 (+5.56%); task 2 the same: Δm = +2.78%
        _job(tmp_path / f"a{s}", "a", s, 0.05, 0.20 + 0.01 * s, wall=20.0 + s)
    _job(tmp_path / "dup", "a", 0, 0.0, 0.0)
    _job(tmp_path / "set", "ls", 0, 0.1, 0.1, members=5, test_errors=[[0.1, 0.1]] * 5)
    _job(tmp_path / "div", "ls", 3, 0.1, 0.1, status="diverged")
    runs, settings_of, left_out = _table_script().load(tmp_path)
    why = dict(left_out)
    assert set(why) == {"dup", "set", "div"}
    assert "duplicate" in why["dup"] and "members 5" in why["set"] and "diverged" in why["div"]
    table, base = _table_script().summarise(runs, "ls")
    assert base == "ls" and list(table.index) == ["ls", "a"]
    assert table.loc["a", "delta_m"] == pytest.approx(100 * (0.95 / 0.90 - 1) / 2)
    assert table.loc["a", "p"] < 1e-3 and table.loc["a", "p_task2"] == 1.0
    assert table.loc["a", "wall_time_s_mean"] == pytest.approx(21.0)
