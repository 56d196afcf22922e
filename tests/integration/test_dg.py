"""Domain generalisation through train.py (train.run, as `python train.py` runs it): every
method (experiment=dg_*) on a tiny Rotated-MNIST stand-in built from generated digits, and
JiGen + PNG on the PACS code path (a generated folder in the PACS layout, ResNet-18 at a tiny
image size)."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import write_digits, write_pacs

ROOT = Path(__file__).resolve().parents[2]
METHODS = sorted(p.stem for p in (ROOT / "moo_lightning" / "conf" / "experiment").glob("dg_*.yaml"))
SMALL = (
    "data.batch_size=64",
    "data.eval_batch_size=100",
    "trainer.max_epochs=1",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "trainer.check_val_every_n_epoch=null",
    "module.width=4",
    "logger=csv",
    "save_model=false",
)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("mnist"), n=600)


def test_every_method_is_an_experiment():
    assert METHODS == ["dg_deepall", "dg_jigen", "dg_jigen_adv", "dg_jigen_png"]


@pytest.mark.parametrize("experiment", METHODS)
def test_each_method_trains_on_the_stand_in_and_records_it(run_train, digits, experiment):
    m = run_train(f"experiment={experiment}", f"data.path={digits}", "data.target=45", *SMALL)
    assert m["status"] == "ok" and m["task"] == "dg_rmnist" and m["steps"] == 3
    assert m["method"] == experiment.removeprefix("dg_")
    assert "stand-in" in m["source_note"] and m["target"] == "45"
    assert m["domains"] == ["0", "15", "30", "45", "60", "75"]
    assert 0 <= m["test/acc"] <= 1 and m["test_acc"] == m["test/acc"]
    assert 0 <= m["val/acc_best"] <= 1 and m["best_step"] == 3
    run = Path(m["run_dir"])
    perms = json.loads((run / "permutations.json").read_text())
    assert len(perms["permutations"]) == 30 and perms["min_hamming_distance"] >= 7
    log = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    if experiment == "dg_deepall":
        assert m["tasks"] == "object" and m["preference"] == [1.0] and "train/loss_1" not in log
    else:
        assert "train/loss_1" in log
    if experiment == "dg_jigen":
        assert m["preference"] == [1.0, 0.7] and m["criterion"] is None
    if experiment in ("dg_jigen_adv", "dg_jigen_png"):
        assert m["criterion"] == "adversarial"
        assert {"train/criterion", "train/discriminator_loss"} <= set(log)
    if experiment == "dg_jigen_png":
        assert m["combiner"] == "png"
        assert {"train/combiner/lambda_0", "train/combiner/lambda_1", "train/combiner/g"} <= set(
            log
        )


def test_jigen_weights_are_those_of_jigen_over_1_7(run_train, digits):
    m = run_train("experiment=dg_jigen", f"data.path={digits}", *SMALL)
    rows = (Path(m["run_dir"]) / "csv" / "metrics.csv").read_text().splitlines()
    head = rows[0].split(",")
    w = [float(rows[1].split(",")[head.index(f"train/weight_{i}")]) for i in (0, 1)]
    np.testing.assert_allclose(w, [1 / 1.7, 0.7 / 1.7], rtol=1e-6)


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_jigen_png_runs_on_the_pacs_code_path(run_train, tmp_path):
    """`train.py experiment=dg_jigen_png task=dg_pacs data.path=<PACS layout>`: ResNet-18 at
    24×24, the official split lists, a few steps."""
    root = write_pacs(tmp_path / "pacs", per_class=3, size=24, split_lists=True)
    m = run_train(
        "experiment=dg_jigen_png",
        "task=dg_pacs",
        f"data.path={root}",
        "data.target=cartoon",
        "data.image_size=24",
        "data.batch_size=16",
        "data.eval_batch_size=32",
        "trainer.max_epochs=1",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.check_val_every_n_epoch=null",
        "trainer.enable_progress_bar=false",
        "save_model=false",
    )
    assert m["status"] == "ok" and m["task"] == "dg_pacs" and m["steps"] == 2
    assert m["backbone"] == "resnet18" and m["combiner"] == "png" and m["target"] == "cartoon"
    assert m["num_classes"] == 7 and "official crossval" in m["source_note"]
    assert m["domains"] == ["art_painting", "cartoon", "photo", "sketch"]
    assert 0 <= m["test/acc"] <= 1
