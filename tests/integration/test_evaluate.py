"""moo-evaluate: a finished run leaves its tested model on disk, and moo-evaluate tests it again
later from the run's saved config, refusing bad input, tampered or swapped models and any code a
run folder names, in one line."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from moo_lightning.cli.evaluate import main as evaluate
from tests.helpers import ROOT, write_glue


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny SST-2 run whose best validation (step 2) is not its last step (4), with the
    resume checkpoint (full state) beside the model file."""
    base = tmp_path_factory.mktemp("evaluate")
    glue = write_glue(base / "glue", "sst2")
    run_dir = base / "run"
    cmd = [
        sys.executable, "train.py", "task=sst2", "encoder=tiny",
        f"data.path={os.path.relpath(glue, ROOT)}",  # relative to where it ran
        "logger=none", "callbacks=resume", "trainer.max_steps=4",
        "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, glue


def test_the_model_file_holds_the_tested_weights(finished_run):
    run_dir, _ = finished_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "model.ckpt"
    assert (run_dir / "model.ckpt.sha256").is_file()
    model = torch.load(run_dir / "model.ckpt", map_location="cpu", weights_only=True)
    assert "optimizer_states" not in model
    full = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    best = full["best_validation"]["state"]
    assert metrics["best_step"] == 2 and metrics["steps"] == 4
    # the best-by-validation weights (tested), not the last step's, and stored once
    assert model["best_validation"]["state"] is None
    for name, value in best.items():
        assert torch.equal(model["state_dict"][f"classifier.{name}"], value), name
    moved = [
        n for n, v in best.items() if not torch.equal(full["state_dict"][f"classifier.{n}"], v)
    ]
    assert moved, "the last step's weights should differ from the best (step 2) here"


def test_evaluate_reproduces_the_recorded_test_metrics(finished_run, capsys, monkeypatch, tmp_path):
    run_dir, _ = finished_run
    monkeypatch.chdir(tmp_path)  # elsewhere: the run's relative data.path is read as it ran
    assert evaluate([str(run_dir)]) == 0
    record = json.loads((run_dir / "evaluation.json").read_text())
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert record["metrics"]["test/acc"] == pytest.approx(recorded["test/acc"])
    assert record["differences_from_run"] == []
    assert record["reproduces_recorded"] == {"test/acc": True, "test/examples": True}
    assert "recorded test metrics reproduced" in capsys.readouterr().out


def test_evaluate_a_checkpoint_on_another_copy_of_the_data(finished_run, tmp_path):
    run_dir, _ = finished_run
    other = write_glue(tmp_path / "other", "sst2", n_train=60, n_val=30)
    out = tmp_path / "eval.json"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert evaluate([str(ckpt), f"data.path={other}", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["checkpoint"] == str(ckpt) and record["changes"] == [f"data.path={other}"]
    assert "reproduces_recorded" not in record  # other data: nothing to compare with
    # the folder, and the content of its validation file (the train rows are the same)
    assert [d.split(":")[0] for d in record["differences_from_run"]] == [
        "data.path",
        "data_files.validation.jsonl",
    ]
    # the validation rows split in half: 15 test examples
    assert record["metrics"]["test/examples"] == 15


@pytest.mark.parametrize(
    "args, expected",
    [
        (["{run}", "data.nope=1"], "data.nope: the run's config"),
        (["{run}", "trainer=gpu"], "only values of the saved config can be changed"),
        (["{run}", "data.path"], "expected key=value"),
        (["{run}/missing"], "no such run folder or checkpoint file"),
        (["{run}/.hydra"], "is not a run folder (no .hydra/config.yaml)"),
        (["{run}/.."], "is not a run folder (no .hydra/config.yaml); run folders inside it: "),
    ],
)
def test_evaluate_refuses_bad_input_in_one_line(finished_run, capsys, args, expected):
    run_dir, _ = finished_run
    assert evaluate([a.format(run=run_dir) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_evaluate_a_corrupt_saved_config_is_one_line(finished_run, tmp_path, capsys):
    """The probe's E12: a run folder whose .hydra/config.yaml is not YAML (a bad copy, an edit)
    was a yaml ParserError traceback."""
    run_dir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / ".hydra" / "config.yaml").write_text("task: [sst2\ndata: {path: : :\n")
    assert evaluate([str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "could not be read" in err[0], err
    assert str(copy / ".hydra" / "config.yaml") in err[0]


def test_evaluate_refuses_a_tampered_model(finished_run, tmp_path, capsys):
    run_dir, _ = finished_run
    copy = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    data = bytearray((copy / "model.ckpt").read_bytes())
    data[-100] ^= 0xFF
    (copy / "model.ckpt").write_bytes(bytes(data))
    assert evaluate([str(copy)]) == 2
    assert "does not match its" in capsys.readouterr().err
    assert not (copy / "evaluation.json").exists() or (
        (copy / "evaluation.json").read_bytes() == (run_dir / "evaluation.json").read_bytes()
    )


def test_evaluate_a_pareto_set_compares_every_members_test_results(tmp_path, capsys):
    from tests.helpers import write_digits

    digits = write_digits(tmp_path / "mnist")
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "train.py", "experiment=mm_epo", f"data.path={digits}",
        "data.num_train=128", "data.val_size=32", "data.num_test=64", "data.batch_size=64",
        "trainer.max_epochs=1", "logger=none", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert evaluate([str(run_dir)]) == 0
    record = json.loads((run_dir / "evaluation.json").read_text())
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert np.allclose(record["metrics"]["test_losses"], recorded["test_losses"])
    assert len(record["metrics"]["test_errors"]) == 5
    assert record["reproduces_recorded"] == {
        "test/hv_loss": True, "test/hv_error": True, "test_losses": True, "test_errors": True
    }  # fmt: skip


def test_evaluate_a_run_without_a_model_names_its_checkpoints(finished_run, tmp_path, capsys):
    run_dir, _ = finished_run
    bare = tmp_path / "bare"
    shutil.copytree(run_dir / ".hydra", bare / ".hydra")
    assert evaluate([str(bare)]) == 2
    assert "holds no model.ckpt" in capsys.readouterr().err
    shutil.copytree(run_dir / "checkpoints", bare / "checkpoints")
    assert evaluate([str(bare)]) == 2
    assert f"pass one of its checkpoints instead: {bare}/checkpoints/" in capsys.readouterr().err


class _Payload:
    """Unpickling this touches a marker file: what a shared folder's pickle could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evaluate_refused(run_folder):
    """``python evaluate.py <run_folder>`` as a user runs it; it must refuse (exit 2). The
    process and its stderr lines."""
    proc = subprocess.run(
        [sys.executable, "evaluate.py", str(run_folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    return proc, proc.stderr.strip().splitlines()


@pytest.mark.parametrize(
    "section, target, body",
    [
        # the probe's case: a pickle carried inside the folder, loaded by torch.load
        ("scheduler", "torch.load", {"f": "${paths.run_dir}/notes.bin", "weights_only": False}),
        ("scheduler", "shutil.copyfile", {"src": "${paths.run_dir}/notes.bin", "dst": "{marker}"}),
        # a function of this package that writes files is not a class its configs build
        ("data", "moo_lightning.records.write_json_atomic", {"path": "{marker}", "value": 1}),
        # nested, in a list: the trainer's plugins
        ("trainer.plugins", "builtins.open", {"file": "{marker}", "mode": "w"}),
        # the probe's E13: Hydra's own blocklist would stop it, but with a traceback
        pytest.param(
            "scheduler", "os.system", {"command": "touch {marker}"}, marks=pytest.mark.slow
        ),
    ],
)
def test_evaluate_never_runs_code_a_run_folder_names(finished_run, tmp_path, section, target, body):
    """A run folder is shared data: moo-evaluate builds only what the package's configs build,
    and refuses anything else in one line naming the key and target, before building anything."""
    import yaml

    run_dir, _ = finished_run
    copy = tmp_path / "shared_run"
    shutil.copytree(run_dir, copy)
    marker = tmp_path / "PWNED"
    torch.save(_Payload(marker), copy / "notes.bin")
    config = yaml.safe_load((copy / ".hydra" / "config.yaml").read_text())
    body = {k: v.replace("{marker}", str(marker)) if isinstance(v, str) else v
            for k, v in body.items()}  # fmt: skip
    node = {"_target_": target, **body}
    if section == "trainer.plugins":
        config["trainer"]["plugins"] = [node]
    else:
        config[section] = node
    (copy / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    proc, err = _evaluate_refused(copy)
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr[-2000:]
    key = "trainer.plugins[0]._target_" if section == "trainer.plugins" else f"{section}._target_"
    assert f"{key} = '{target}' is not a class moo-lightning's configs build" in err[0]
    assert not marker.exists()
    assert not (copy / "evaluation.json").exists() or (
        (copy / "evaluation.json").read_bytes() == (run_dir / "evaluation.json").read_bytes()
    )


def test_evaluate_builds_a_target_the_user_trusts_by_name(finished_run, tmp_path, capsys):
    """An optimizer class is accepted as it is; a target of one's own with --trust."""
    import yaml

    run_dir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = yaml.safe_load((copy / ".hydra" / "config.yaml").read_text())
    config["optimizer"]["_target_"] = "torch.optim.RMSprop"
    config["module"]["objective"]["_target_"] = "tests.helpers.OwnObjective"
    (copy / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert evaluate([str(copy)]) == 2
    assert "module.objective._target_ = 'tests.helpers.OwnObjective'" in capsys.readouterr().err
    assert evaluate([str(copy), "--trust", "tests.helpers.OwnObjective"]) == 0
    record = json.loads((copy / "evaluation.json").read_text())
    assert record["metrics"]["test/examples"] > 0


def test_evaluate_never_runs_code_an_interpolation_produces(finished_run, tmp_path):
    """A resolver (oc.create, oc.decode) can turn a string into a node with a _target_: the
    config is resolved once, checked, and built from what was checked."""
    import yaml

    run_dir, _ = finished_run
    copy = tmp_path / "shared_run"
    shutil.copytree(run_dir, copy)
    marker = tmp_path / "PWNED"
    config = yaml.safe_load((copy / ".hydra" / "config.yaml").read_text())
    config["scheduler"] = f"${{oc.create:{{_target_: builtins.open, file: '{marker}', mode: w}}}}"
    (copy / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    proc, err = _evaluate_refused(copy)
    assert len(err) == 1 and "scheduler._target_ = 'builtins.open'" in err[0], proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        # probe E16: --out into a missing folder or onto a folder (a traceback after the test)
        (["{run}", "--out", "{tmp}/missing/eval.json"], "the folder {tmp}/missing does not exist"),
        (["{run}", "--out", "{tmp}"], "--out {tmp} is a folder; give a file path"),
        # probe E22: another encoder size (a size-mismatch traceback from the state-dict load)
        (["{run}", "encoder.hidden=64"], "does not fit the model rebuilt from"),
    ],
)
def test_evaluate_refuses_a_bad_destination_or_model_shape_in_one_line(
    finished_run, tmp_path, capsys, args, expected
):
    run_dir, _ = finished_run
    before = (
        (run_dir / "evaluation.json").read_bytes()
        if (run_dir / "evaluation.json").exists()
        else None
    )
    assert evaluate([a.format(run=run_dir, tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected.format(tmp=tmp_path) in err[0], err
    after = (
        (run_dir / "evaluation.json").read_bytes()
        if (run_dir / "evaluation.json").exists()
        else None
    )
    assert after == before  # nothing written


def test_evaluate_refuses_a_model_swapped_in_from_another_run(finished_run, tmp_path, capsys):
    """Probe E23: a model.ckpt from elsewhere, with its own (correct) checksum file, was tested
    and reported "reproduced" when the accuracy happened to match. The run records the SHA-256
    of the model it saved; another file is refused."""
    import hashlib

    run_dir, _ = finished_run
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert (
        recorded["model_sha256"]
        == hashlib.sha256((run_dir / "model.ckpt").read_bytes()).hexdigest()
    )
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    model = torch.load(copy / "model.ckpt", map_location="cpu", weights_only=True)
    name = next(iter(model["state_dict"]))
    model["state_dict"][name] = model["state_dict"][name] + 1.0  # another run's weights
    torch.save(model, copy / "model.ckpt")
    digest = hashlib.sha256((copy / "model.ckpt").read_bytes()).hexdigest()
    (copy / "model.ckpt.sha256").write_text(f"{digest}  model.ckpt\n")  # its own checksum
    assert evaluate([str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not the model this run saved" in err[0], err
    assert not (copy / "evaluation.json").exists() or (
        (copy / "evaluation.json").read_bytes() == (run_dir / "evaluation.json").read_bytes()
    )


def test_evaluate_a_read_only_run_folder_fails_in_one_line_before_testing(finished_run, tmp_path):
    """Probe E24: a run folder that cannot be written gave a PermissionError traceback after the
    test had run. Now one line before anything is built; --out elsewhere works."""
    from tests.helpers import as_unprivileged

    run_dir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "evaluation.json").unlink(missing_ok=True)
    cmd = as_unprivileged([sys.executable, "evaluate.py", str(copy)])
    if cmd is None:
        pytest.skip("root without setpriv ignores the folder's mode")
    copy.chmod(0o555)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        copy.chmod(0o755)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and f"{copy} is not writable" in err[0] and "--out" in err[0], err
    assert "test/acc" not in proc.stdout  # refused before the test ran
