"""task=multi_mnist through train.py: every set method (experiment=mm_*) on a few hundred
composites of synthetic digits, and what metrics.json records for the Pareto-set report."""

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import write_digits

ROOT = Path(__file__).resolve().parents[2]
METHODS = sorted(p.stem for p in (ROOT / "moo_lightning" / "conf" / "experiment").glob("mm_*.yaml"))
SMALL = (
    "data.num_train=256",
    "data.num_val=64",
    "data.num_test=128",
    "data.batch_size=64",
    "data.eval_batch_size=64",
    "trainer.max_epochs=1",
    "logger=none",
)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("mnist"))


def test_every_set_method_is_an_experiment():
    assert METHODS == ["mm_epo", "mm_ls", "mm_mgda", "mm_png", "mm_stch"]


@pytest.mark.parametrize("experiment", METHODS)
def test_each_set_method_trains_five_members_and_records_the_set(run_train, digits, experiment):
    m = run_train(f"experiment={experiment}", f"data.path={digits}", *SMALL)
    assert m["status"] == "ok" and m["task"] == "multi_mnist"
    assert m["method"] == experiment.removeprefix("mm_") == m["combiner"]
    assert m["members"] == 5 and m["steps"] == 4
    losses, errors = np.array(m["test_losses"]), np.array(m["test_errors"])
    assert losses.shape == errors.shape == (5, 2)
    assert np.isfinite(losses).all() and ((errors >= 0) & (errors <= 1)).all()
    assert m["source_note"] == "built from the MNIST test split"
    assert "encoder" not in m["choices"] and "objective" not in m["choices"]  # not used here
    if experiment in ("mm_ls", "mm_epo", "mm_stch", "mm_mgda"):
        assert np.array(m["preferences"]).shape == (5, 2)
        assert m["preference"] is None  # the members follow their own, no single r
    else:
        assert m["preferences"] is None and m["criterion"] == "energy"
    assert (m["non_uniformity"] is not None) == (experiment == "mm_epo")
    assert m["ls_warmup_steps"] == (2 if experiment == "mm_mgda" else 0)
    # members differ: independent initialisations (and preferences) give different sets
    assert len({tuple(np.round(row, 6)) for row in losses}) == 5


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_every_experiment_runs_as_one_fast_dev_run_sweep(digits, tmp_path):
    """`-m experiment=glob(*) debug=fast`: every preset composes, builds and takes a step."""
    import os
    import subprocess
    import sys

    env = os.environ | {"MNIST_DIR": str(digits), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "smoke"
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "experiment=glob(*)",
            "debug=fast",
            f"hydra.sweep.dir={out}",
            "trainer.enable_progress_bar=false",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    experiments = sorted(
        p.stem for p in (ROOT / "moo_lightning" / "conf" / "experiment").glob("*.yaml")
    )
    done = sorted(p.parent.name for p in out.glob("*/metrics.json"))
    assert done == [f"debug=fast,experiment={e}" for e in experiments]


def test_a_criterion_needs_a_combiner_that_steers_by_it(run_train, digits):
    from moo_lightning.cli.errors import user_error

    with pytest.raises(Exception) as info:
        run_train("experiment=mm_png", "combiner=epo", f"data.path={digits}", *SMALL)
    err = user_error(info.value)
    assert isinstance(err, ValueError) and "combiner must be one that uses it (png)" in str(err)


def test_missing_digits_folder_is_one_line(run_train, tmp_path):
    from moo_lightning.cli.errors import user_error

    with pytest.raises(Exception) as info:
        run_train("experiment=mm_ls", f"data.path={tmp_path}/nope", *SMALL)
    err = user_error(info.value)
    assert err is not None and "is not a folder" in str(err)
