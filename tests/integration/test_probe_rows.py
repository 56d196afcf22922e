"""The probe's remaining traceback / silent-wrong rows (shared/design/PROBE.md, issue #24), each run
the way a user runs it: a wrong value, file or folder is one line naming it and what is allowed,
before anything trains or is written."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT, as_unprivileged, write_glue

TINY = ("task=sst2", "encoder=tiny", "logger=none", "trainer.max_steps=2")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    good = write_glue(root / "sst2", "sst2")
    both = write_glue(root / "both", "sst2")  # D24: the glue-schema files and the GLUE TSVs
    rows = "".join(f"film {i}\t{1 - i % 2}\n" for i in range(30))
    (both / "train.tsv").write_text("sentence\tlabel\n" + rows)
    (both / "dev.tsv").write_text("sentence\tlabel\n" + rows)
    one_val = write_glue(root / "one_val", "sst2", n_val=1)  # DN3: nothing left to test on
    long = root / "long"  # C19: texts longer than the encoder's positions
    long.mkdir()
    text = " ".join(["a long film review"] * 300)
    for split, n in (("train", 30), ("validation", 10)):
        lines = [f'{{"sentence": "{text} {i}", "label": {i % 2}}}\n' for i in range(n)]
        (long / f"{split}.jsonl").write_text("".join(lines))
    return {"GOOD": good, "BOTH": both, "ONE_VAL": one_val, "LONG": long}


CASES = [
    # (probe id, overrides, message fragment)
    ("D24", ("data.path=BOTH",), "holds two copies of the data: train.jsonl + validation.jsonl"),
    ("DN3", ("data.path=ONE_VAL",), "holds 1 row(s); it is split into a validation half and"),
    (
        "C19",
        ("data.path=LONG", "data.max_length=1000"),
        "data.max_length=1000 exceeds the encoder's 512 positions",
    ),
    ("C32", ("++foo=1",), "foo=1: no setting of this project is called 'foo'"),
    ("C33", ("+foo=1",), "no setting of this project is called 'foo' (added with +/++"),
    ("C34", ("++lr=0.5",), "no setting of this project is called 'lr'"),
]


@pytest.mark.parametrize(("row", "overrides", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_probe_row_fails_before_training_in_one_line(run_train, folders, row, overrides, fragment):
    """Before: D24 read the JSON files and ignored the TSVs silently; DN3 gave an "ok" run with
    no test result; C19 crashed mid-training (index 514 is out of bounds); C32-C34 were ignored
    (++lr=0.5 trained with lr 1e-5)."""
    from moo_lightning.cli.errors import user_error

    overrides = tuple(
        o.split("=")[0] + "=" + str(folders.get(o.split("=", 1)[1], o.split("=", 1)[1]))
        for o in overrides
    )
    if not any(o.startswith("data.path") for o in overrides):
        overrides += (f"data.path={folders['GOOD']}",)
    with pytest.raises(Exception) as info:
        run_train(*TINY, *overrides)
    err = user_error(info.value)
    assert err is not None, f"not reported as bad input: {info.value!r}"
    assert fragment in str(err), str(err)
    if row == "C34":
        assert "optimizer.lr" in str(err)  # the key it may have meant


def test_max_length_at_the_encoders_limit_trains(run_train, folders):
    """C19's other side: the largest allowed value works (the tiny RoBERTa: 514 positions)."""
    long = f"data.path={folders['LONG']}"
    m = run_train(*TINY, long, "data.max_length=512", "trainer.val_check_interval=2", "test=false")
    assert m["status"] == "ok"


def _train(*args, timeout=300):
    cmd = [sys.executable, "train.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _one_line_error(proc) -> str:
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def _search(folders, sweep_dir, *extra):
    return (
        "-m", "hparams_search=glue_optuna", *TINY, f"data.path={folders['GOOD']}",
        "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
        "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep_dir}", *extra,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("row", "override", "fragment"),
    [
        (
            "O3",
            'hydra.sweeper.params={optimizer.lr:"tag(log, interval(0, 1e-4))"}',
            "'optimizer.lr=tag(log, interval(0, 1e-4))' is not a search dimension Optuna accepts",
        ),
        pytest.param(
            "O4",
            'hydra.sweeper.params.preference="interval(0.9,0.1)"',
            "'preference=interval(0.9,0.1)' is not a search dimension",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "O10",
            "hydra.sweeper.n_trials=0",
            "hydra.sweeper.n_trials must be an integer >= 1",
            marks=pytest.mark.slow,
        ),
        (
            "O13",
            "hydra.sweeper.storage=sqlite:////nonexistent/dir/study.db",
            "the folder /nonexistent/dir does not exist",
        ),
    ],
)
def test_a_search_that_cannot_work_is_one_line_before_any_trial(
    folders, tmp_path, row, override, fragment
):
    """Before: Optuna's own tracebacks (a log interval from 0, low > high, no trials, a SQLAlchemy
    error for the storage)."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    line = _one_line_error(_train(*_search(folders, tmp_path / "s", override)))
    assert line.startswith("error: ") and fragment in line, line
    assert not list(tmp_path.glob("s/*/metrics.json"))  # no trial ran


def test_a_search_where_no_trial_returns_its_metric_ends_in_one_line(folders, tmp_path):
    """O8/O9/O12: every trial without the optimised metric (here a metric no run records) ended
    in Optuna's "No trials are completed yet" traceback."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    proc = _train(*_search(folders, tmp_path / "s", "optimized_metric=val/nonexistent"))
    line = _one_line_error(proc)
    assert "no trial of the search returned optimized_metric=val/nonexistent" in line, line


@pytest.mark.slow  # make test-slow (kept out of the 4-minute default run)
def test_a_search_over_a_continuous_lambda_names_its_trials_within_the_folder_limit(
    folders, tmp_path
):
    """O7/O14: one continuous dimension besides lr and the preference made the trial's folder
    name longer than 255 bytes ("File name too long" at the first trial). Long names are cut and
    told apart by a hash."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    extra = 'hydra.sweeper.params={objective.lam:"interval(0.1,0.9)"}'
    proc = _train(*_search(folders, tmp_path / "s", extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = [p.parent for p in (tmp_path / "s").glob("*/metrics.json")]
    assert len(trial.name.encode()) <= 200 and "~" in trial.name


def _train_unprivileged(args, folder):
    """train.py without root's override of file modes (a read-only folder is read-only), then
    ``folder`` made writable again for the cleanup."""
    cmd = as_unprivileged([sys.executable, "train.py", *args])
    if cmd is None:
        pytest.skip("root without setpriv ignores the folder's mode")
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        if folder.exists():
            folder.chmod(0o755)


@pytest.mark.parametrize("row", [pytest.param("WN8", marks=pytest.mark.slow), "WN10"])
def test_an_unwritable_run_or_sweep_folder_is_one_line(folders, tmp_path, row):
    """WN8: an existing read-only run folder ended in Hydra's "Unable to configure handler
    'file'" traceback; WN10: a read-only sweep folder in a PermissionError traceback."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    args = [*TINY, f"data.path={folders['GOOD']}", "trainer.val_check_interval=2"]
    if row == "WN8":
        args += [f"hydra.run.dir={locked}"]
        key = f"hydra.run.dir={locked}: it is not writable"
    else:
        args = ["-m", *args, "seed=0,1", f"hydra.sweep.dir={locked}/sweep"]
        key = f"hydra.sweep.dir={locked}/sweep: its parent {locked} is not writable"
    line = _one_line_error(_train_unprivileged(args, locked))
    assert line.startswith("error: ") and key in line, line


def test_no_option_of_any_group_trips_the_unknown_key_check():
    """The check behind C32-C34 knows every top-level key the package's own configs make."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from moo_lightning.cli.checks import check_unknown_keys
    from tests.helpers import CONF

    groups = {
        str(d.relative_to(CONF)): sorted(
            p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_")
        )
        for d in [
            *sorted(Path(CONF).iterdir()),
            Path(CONF, "module/encoder"),
            Path(CONF, "module/objective"),
        ]
        if d.is_dir() and d.name not in ("hydra", "__pycache__")
    }
    with initialize_config_dir(CONF, version_base="1.3"):
        for group, options in groups.items():
            for option in options:
                cfg = compose("train", overrides=[f"{group}={option}"])
                check_unknown_keys(cfg)  # raises on a key it does not know


def _run_in(run_dir, *overrides):
    """train.run in-process in a given run folder (run_train names its own folder)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from moo_lightning.cli import train
    from moo_lightning.cli.argv import expand_short_form
    from tests.helpers import CONF

    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose(
            "train", overrides=[*map(expand_short_form, overrides)], return_hydra_config=True
        )
    with open_dict(cfg):
        cfg.paths.run_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    return train.run(cfg)


def test_resuming_from_weights_only_or_another_model_size_is_one_line(folders, tmp_path):
    """K13: resuming with encoder.hidden=64 failed in the state-dict load (a 74-line size-mismatch
    traceback) before the settings guard could name the setting; KN10: ckpt_path=<run>/model.ckpt
    (weights only) failed with KeyError 'Trying to restore optimizer state ...'."""
    from moo_lightning.cli.errors import user_error

    run_dir = tmp_path / "run"
    base = (*TINY, f"data.path={folders['GOOD']}", "trainer.val_check_interval=2")
    _run_in(run_dir, *base, "callbacks=resume", "save_model=true")
    model = run_dir / "model.ckpt"
    (run_dir / "metrics.json").unlink()  # an interrupted run: it may be resumed
    for extra, fragment in (
        (("encoder.hidden=64", "ckpt_path=last"), "other settings (encoder.hidden: 32 → 64)"),
        ((f"ckpt_path={model}",), "holds a model's weights only"),
    ):
        with pytest.raises(Exception) as info:
            _run_in(run_dir, *base, "callbacks=resume", *extra)
        err = user_error(info.value)
        assert err is not None and fragment in str(err), repr(info.value)
    assert not (run_dir / "metrics.json").exists()  # nothing written


def _edit_in_place(path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` (same length) and put the file's time stamps back, as cp -p,
    rsync -t or a careful editor leave them."""
    import os

    assert len(old) == len(new)
    stat = path.stat()
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


def test_a_data_file_edited_in_place_is_read_again_and_is_another_setting(tmp_path):
    """D31: a file edited with its size and time stamp kept was read stale from the datasets
    cache (in later processes too). SN1: a finished job was then skipped as if trained on the
    new rows. The cache is keyed by content, and the files' content is part of the settings."""
    from moo_lightning.cli.errors import user_error

    data = write_glue(tmp_path / "sst2", "sst2")
    base = (*TINY, f"data.path={data}", "trainer.val_check_interval=2", "save_model=false")
    run_dir = tmp_path / "run"
    _run_in(run_dir, *base)
    _edit_in_place(data / "train.jsonl", '"label": 0', '"label": 1')
    with pytest.raises(Exception) as info:  # SN1: the same command, the same folder
        _run_in(run_dir, *base)
    err = user_error(info.value)
    assert err is not None and "other settings (data_files.train.jsonl:" in str(err), repr(err)
    _edit_in_place(data / "train.jsonl", '"label": 1', '"label": 7')  # D31: read again
    with pytest.raises(Exception) as info:
        _run_in(tmp_path / "other", *base)
    err = user_error(info.value)
    assert err is not None and "train.jsonl, row 1: label 7 is not 0..1" in str(err), repr(err)


@pytest.mark.slow
def test_wandb_online_without_a_reachable_server_is_one_line(folders, tmp_path):
    """WN5: logger=wandb online with a well-formed key and no server waited for W&B's init
    timeout, then ended in a wandb.errors.CommError traceback. Now one line saying what to do
    (the wait is W&B's own: WANDB_INIT_TIMEOUT, shortened here)."""
    pytest.importorskip("wandb")
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"WANDB_MODE": "online", "WANDB_API_KEY": "a" * 45, "WANDB_INIT_TIMEOUT": "5",
            "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_DIR": str(tmp_path)}  # fmt: skip
    args = [*TINY, f"data.path={folders['GOOD']}", "trainer.val_check_interval=2"]
    cmd = [sys.executable, "train.py", *args, "logger=wandb", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "the W&B server could not be reached" in errors[0], errors
    assert "a" * 45 not in proc.stdout + proc.stderr  # the key is never printed


def test_a_run_folder_made_read_only_during_the_run_keeps_the_result(folders, tmp_path):
    """WN9: the folder turned read-only during training: Lightning swallowed the PermissionError
    of model.ckpt, the run then failed with a FileNotFoundError traceback and no metrics.json:
    the result was lost. Now one line that names where the record went instead."""
    import json
    import re
    from pathlib import Path

    run_dir = tmp_path / "run"
    args = [*TINY, f"data.path={folders['GOOD']}", "trainer.val_check_interval=2",
            "save_model=true", f"hydra.run.dir={run_dir}",
            "+callbacks.lock._target_=tests.helpers.lock_folder_at_fit_end",
            f"+callbacks.lock.folder={run_dir}"]  # fmt: skip
    line = _one_line_error(_train_unprivileged(args, run_dir))
    assert f"{run_dir / 'metrics.json'} could not be written" in line, line
    spare = re.search(r"the run's record is in (\S+) ", line).group(1)
    record = json.loads(Path(spare).read_text())
    assert record["status"] == "ok" and record["val/acc_best"] is not None
    assert "test/acc" in record and "model" not in record  # tested; the model was not saved
    Path(spare).unlink()
