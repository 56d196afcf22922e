"""Every combiner config, and every TorchJD method the torchjd config wraps that accepts a
2-objective Gram, trains one Multi-MNIST model (module.members=1) through the real command
line: status ok, every step taken, the preference recorded exactly when the combiner uses it
(with members=1 and preferences=spread the one member gets (0.5, 0.5))."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, build_combiner, combiner_names, write_digits

COMMON = [
    "task=multi_mnist",
    "module.members=1",
    "data.num_train=64",
    "data.num_val=32",
    "data.num_test=32",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "trainer.max_epochs=1",
    "logger=none",
    "save_model=false",
    "trainer.enable_progress_bar=false",
    "hydra/job_logging=disabled",
]
STEPS = 2  # 64 composites in batches of 32, one epoch

# TorchJD methods (combiner=torchjd combiner.method=...) and the kwargs they require
TORCHJD_PLAIN = ["UPGrad", "DualProj", "IMTLG", "AlignedMTL", "GradVac", "PCGrad", "MGDA"]
TORCHJD_PLAIN += ["Mean", "Sum", "Random"]
TORCHJD_KWARGS = {
    "CAGrad": "{c: 0.4}",
    "FairGrad": "{alpha: 1.0}",
    "CRMOGM": "{weighting: UPGrad}",
    "Constant": "null",  # its weights come from the preference
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("mnist"))


def multirun(out, digits, *overrides):
    env = os.environ | {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "train.py", "-m", *COMMON, f"data.path={digits}"]
    cmd += [f"hydra.sweep.dir={out}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/metrics.json"))]


def check(m, uses_preference, what):
    assert m["status"] == "ok", what
    assert m["members"] == 1 and m["steps"] == STEPS and m["skipped_steps"] == 0, what
    assert np.isfinite(np.array(m["test_losses"], dtype=float)).all(), what
    if uses_preference:
        np.testing.assert_allclose(m["preferences"], [[0.5, 0.5]], err_msg=what)
    else:
        assert m["preferences"] is None, what
    assert m["preference"] is None, what  # the member follows its own


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_every_combiner_config_trains_one_multi_mnist_model(digits, tmp_path):
    names = combiner_names()
    records = multirun(tmp_path, digits, "combiner=" + ",".join(names))
    assert sorted(m["choices"]["combiner"] for m in records) == names
    for m in records:
        name = m["choices"]["combiner"]
        check(m, build_combiner(name).uses_preference, name)


def _torchjd_runs(tmp_path, digits):
    from moo_lightning.combiners import TorchJD

    runs = [(tmp_path / "plain", ["combiner.method=" + ",".join(TORCHJD_PLAIN)])]
    for method, kwargs in TORCHJD_KWARGS.items():
        runs.append((tmp_path / method, [f"combiner.method={method}", f"combiner.kwargs={kwargs}"]))
    seen = {}
    for out, overrides in runs:
        for m in multirun(out, digits, "combiner=torchjd", *overrides):
            method = m["combiner"].removeprefix("torchjd[").rstrip("]")  # 'torchjd[UPGrad]'
            kwargs = yaml.safe_load(TORCHJD_KWARGS.get(method, "null"))
            seen[method] = (m, TorchJD(method, kwargs).uses_preference)
    return seen


@pytest.mark.slow
def test_every_wrapped_torchjd_method_trains_one_multi_mnist_model(digits, tmp_path):
    """Krum is left out: it needs at least n_byzantine + 3 = 3 objectives."""
    seen = _torchjd_runs(tmp_path, digits)
    assert sorted(seen) == sorted(TORCHJD_PLAIN + list(TORCHJD_KWARGS))
    for method, (m, uses) in seen.items():
        check(m, uses, method)
