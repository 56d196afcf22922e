"""Every wrong value a user can type fails before training, naming the key, the value and what is
allowed (the subprocess tests in test_text.py check that train.py prints it as one line)."""

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from tests.helpers import write_glue


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    good = write_glue(root / "sst2", "sst2")
    cols = root / "cols"
    cols.mkdir()
    (cols / "train.jsonl").write_text('{"text": "a", "label": 0}\n')
    (cols / "validation.jsonl").write_text('{"text": "a", "label": 0}\n')
    labels = root / "labels"
    labels.mkdir()
    (labels / "train.jsonl").write_text('{"sentence": "a", "label": 7}\n' * 30)
    (labels / "validation.jsonl").write_text('{"sentence": "a", "label": 0}\n' * 4)
    empty = root / "empty"
    empty.mkdir()
    half = root / "half"  # floats: 1.0 is a label, 1.5 is not
    half.mkdir()
    rows = [0.0, 1.0, 1.5] + [0.0, 1.0] * 15
    (half / "train.jsonl").write_text("".join(f'{{"sentence": "a", "label": {v}}}\n' for v in rows))
    (half / "validation.jsonl").write_text('{"sentence": "a", "label": 0}\n' * 4)
    wordy = root / "wordy"  # label names are accepted, other words are not
    wordy.mkdir()
    (wordy / "train.jsonl").write_text('{"sentence": "a", "label": "positive"}\n' * 30)
    (wordy / "validation.jsonl").write_text(
        '{"sentence": "a", "label": "negative"}\n{"sentence": "b", "label": "maybe"}\n'
    )
    ragged = root / "ragged"  # a TSV row with a stray tab
    ragged.mkdir()
    ok_rows = "".join(f"film {i}\t{i % 2}\n" for i in range(30))
    (ragged / "train.tsv").write_text("sentence\tlabel\n" + ok_rows + "a\tgood\tfilm\t1\n")
    (ragged / "dev.tsv").write_text("sentence\tlabel\n" + ok_rows)
    latin = root / "latin"  # not UTF-8
    latin.mkdir()
    (latin / "train.tsv").write_bytes(("sentence\tlabel\n" + ok_rows).encode() + b"caf\xe9\t1\n")
    (latin / "dev.tsv").write_text("sentence\tlabel\n" + ok_rows)
    other = write_glue(root / "qnli_rows", "qnli")  # question + sentence read as SST-2
    nulltext = root / "nulltext"
    nulltext.mkdir()
    lines = [f'{{"sentence": "film {i}", "label": {i % 2}}}\n' for i in range(30)]
    lines[4] = '{"sentence": null, "label": 0}\n'
    (nulltext / "train.jsonl").write_text("".join(lines))
    (nulltext / "validation.jsonl").write_text('{"sentence": "a", "label": 0}\n' * 4)
    emptyfile = root / "emptyfile"  # a train file with no rows
    emptyfile.mkdir()
    (emptyfile / "train.jsonl").write_text("")
    (emptyfile / "validation.jsonl").write_text('{"sentence": "a", "label": 0}\n' * 4)
    return {
        "emptyfile": emptyfile,
        "ragged": ragged,
        "latin": latin,
        "other": other,
        "nulltext": nulltext,
        "good": good,
        "cols": cols,
        "labels": labels,
        "empty": empty,
        "half": half,
        "wordy": wordy,
    }


TINY = ("task=sst2", "encoder=tiny", "logger=none", "trainer.max_steps=2")
CASES = [
    # (overrides, exception, message fragment)
    (("task=cola",), (MissingConfigException, ConfigCompositionException), "task"),
    (
        ("task=_glue",),
        ValueError,
        "data.task must be one of sst2, qnli, mnli (task=sst2|qnli|mnli)",
    ),
    (("combiner=adam",), (MissingConfigException, ConfigCompositionException), "combiner"),
    (("objective=focal",), (MissingConfigException, ConfigCompositionException), "objective"),
    (("encoder=bert_huge",), (MissingConfigException, ConfigCompositionException), "encoder"),
    (("preference=[0.2,0.3,0.5]",), ValueError, "one entry per objective (2). Found 3"),
    (("preference=[-0.5,1.5]",), ValueError, "must be finite and > 0"),
    (("preference=[0,0]",), ValueError, "must be finite and > 0"),
    (("preference=1.5",), ValueError, "must lie in (0, 1)"),
    (
        ("objective.temperature=0",),
        ValueError,
        "objective.temperature must be a finite number > 0. Found 0",
    ),
    (
        ("objective.temperature=-1",),
        ValueError,
        "objective.temperature must be a finite number > 0",
    ),
    (("objective.lam=1.5",), ValueError, "objective.lam must lie in [0, 1]. Found 1.5"),
    (("objective.global_batch=maybe",), ValueError, "objective.global_batch must be true or false"),
    (("objective=ce", "combiner=epo"), ValueError, "single loss: combiner must be 'ls'"),
    (("scheduler.warmup=1.5",), ValueError, "scheduler.warmup must be a fraction"),
    (("encoder.pooling=max",), ValueError, "encoder.pooling must be one of cls, mean"),
    (("data.num_train=100000",), ValueError, "data.num_train=100000 exceeds"),
    (("data.num_train=3",), ValueError, "data.num_train=3 is too small"),
    (("data.batch_size=3",), ValueError, "data.batch_size=3 is too small"),
    (("data.path=MISSING",), FileNotFoundError, "is not a folder"),
    (("data.path=EMPTY",), FileNotFoundError, "holds neither"),
    (("data.path=COLS",), ValueError, "missing ['sentence']"),
    (("data.path=LABELS",), ValueError, "train.jsonl, row 1: label 7 is not 0..1"),
    (("data.path=HALF",), ValueError, "train.jsonl, row 3: label 1.5 is not 0..1"),
    (("data.path=WORDY",), ValueError, "validation.jsonl, row 2: label 'maybe' is not 0..1"),
    (("data.path=EMPTYFILE",), ValueError, "train.jsonl: the file is empty (no rows)"),
    (("data.path=RAGGED",), ValueError, "train.tsv, row 31: 4 fields where the header has 2"),
    (("data.path=LATIN",), ValueError, "train.tsv: not UTF-8 text (byte b'\\xe9'"),
    (("data.path=OTHER",), ValueError, "has the text columns ['question'] of another task"),
    (("data.path=NULLTEXT",), ValueError, "train.jsonl, row 5: sentence must be a non-empty"),
    (("combiner=epo", "combiner.eps=nan"), ValueError, "combiner.eps must be a finite number"),
    (("combiner=png", "combiner.alpha=inf"), ValueError, "combiner.alpha must be a finite number"),
    (("optimizer.lr=-1e-5",), ValueError, "optimizer: Invalid learning rate: -1e-05"),
    (("data.balanced=no",), ValueError, "data.balanced must be true or false. Found 'no'"),
    (("data.max_length=1",), ValueError, "data.max_length must be an integer >= 2. Found 1"),
    (("data.num_train=0",), ValueError, "data.num_train must be a positive integer or null"),
    (("data.eval_batch_size=0",), ValueError, "data.eval_batch_size must be an integer >= 1"),
    (("data.task=cola",), ValueError, "mnli (task=sst2|qnli|mnli). Found 'cola'"),
    (("+trainer.gradient_clip_val=1.0",), Exception, "gradient_clip_val"),
    (("+trainer.accumulate_grad_batches=2",), Exception, "accumulate_grad_batches"),
    (("trainer.precision=16-mixed",), ValueError, "trainer.precision=16-mixed is not supported"),
    (("trainer.precision=16-mixed", "combiner=ls"), ValueError, "16-mixed is not supported"),
    (("combiner.on_failure=ignore",), ValueError, "on_failure must be 'raise' or 'ls'"),
    (("combiner.cvxpy_solver=GLPK",), ValueError, "'GLPK' is not installed"),
    (("module.gradient_scope=[nothing]",), ValueError, "matches no trainable parameter"),
    (("module.gradient_scope=everything",), ValueError, "gradient_scope must be 'all'"),
    (("optimized_metric=test/acc",), ValueError, "never a test metric"),
    (("module.dropout=nan",), ValueError, "module.dropout must be a probability in [0, 1)"),
    (("encoder.dropout=1.5",), ValueError, "encoder.dropout must be a probability in [0, 1)"),
    (("encoder.dropout=nan",), ValueError, "encoder.dropout must be a probability in [0, 1)"),
    (("save_model=maybe",), ValueError, "save_model must be true, false or auto"),
    # the probe's tracebacks and silent wrongs on run-level settings (C24, X70, X72, X76, X62,
    # X66, X75, X54, X10, C49, C51)
    (("seed=null",), ValueError, "seed must be an integer >= 0. Found None"),
    (("seed=1.5",), ValueError, "seed must be an integer >= 0. Found 1.5"),
    (("seed=true",), ValueError, "seed must be an integer >= 0. Found True"),
    (("test=maybe",), ValueError, "test must be true or false. Found 'maybe'"),
    (("skip_completed=maybe",), ValueError, "skip_completed must be true or false"),
    (("trainer.val_check_interval=0",), ValueError, "trainer.val_check_interval must be"),
    (("++trainer.max_steps=nan",), ValueError, "trainer.max_steps must be an integer >= -1"),
    (("ckpt_path=123",), ValueError, "ckpt_path must be a file path, 'last' or null"),
    (("module.max_bad_steps=nan",), ValueError, "module.max_bad_steps must be an integer >= 1"),
    (("objective.temperature=inf",), ValueError, "objective.temperature must be a finite"),
    (
        (
            "combiner=png",
            "combiner/criterion=weighted_distance",
            "combiner.criterion.target=[-1,1]",
        ),
        ValueError,
        "combiner.criterion.target must be a list of finite numbers > 0",
    ),
    (
        (
            "combiner=png",
            "combiner/criterion=weighted_distance",
            "combiner.criterion.target=[0.2,0.3,0.5]",
        ),
        ValueError,
        "combiner.criterion.target must have one entry per objective (2). Found 3",
    ),
    (("optimized_metric=acc",), ValueError, "optimized_metric='acc': a search may optimise"),
]


@pytest.mark.parametrize(("overrides", "exc", "fragment"), CASES, ids=[c[0][0] for c in CASES])
def test_bad_input_fails_before_training_with_a_clear_message(
    run_train, folders, overrides, exc, fragment
):
    paths = {
        "MISSING": str(folders["good"]) + "/nope",
        "EMPTY": str(folders["empty"]),
        "COLS": str(folders["cols"]),
        "LABELS": str(folders["labels"]),
        "HALF": str(folders["half"]),
        "EMPTYFILE": str(folders["emptyfile"]),
        "RAGGED": str(folders["ragged"]),
        "LATIN": str(folders["latin"]),
        "OTHER": str(folders["other"]),
        "NULLTEXT": str(folders["nulltext"]),
        "WORDY": str(folders["wordy"]),
    }
    overrides = tuple(
        o.split("=")[0] + "=" + paths.get(o.split("=", 1)[1], o.split("=", 1)[1]) for o in overrides
    )
    if not any(o.startswith("data.path") for o in overrides):
        overrides += (f"data.path={folders['good']}",)
    from moo_lightning.cli.errors import user_error

    with pytest.raises(Exception) as info:
        run_train(*TINY, *overrides)
    if isinstance(info.value, MissingConfigException | ConfigCompositionException):
        err = info.value  # Hydra's own message lists the available options
    else:
        err = user_error(info.value)  # what train.py prints as its one line
        assert err is not None, f"not reported as bad input: {info.value!r}"
    assert isinstance(err, exc)
    assert fragment in str(err)


def test_errors_raised_during_training_keep_their_traceback(run_train, folders, monkeypatch):
    # a ValueError from a bug in training code is not bad input: train.py must not shorten it
    from moo_lightning.cli.errors import user_error
    from moo_lightning.tasks.glue.module import TextClassificationModule

    def broken(self, batch):
        raise ValueError("a bug in the training step, not a setting")

    monkeypatch.setattr(TextClassificationModule, "objectives", broken)
    with pytest.raises(ValueError, match="a bug in the training step") as info:
        run_train(*TINY, f"data.path={folders['good']}")
    assert user_error(info.value) is None


_SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "written",
    [
        "1.0/0.0",
        "true/false",
        pytest.param('"1"/"0"', marks=_SLOW),
        pytest.param("1e0/0e0", marks=_SLOW),
        pytest.param("positive/negative", marks=_SLOW),
    ],
)
def test_labels_as_people_write_them_train_like_integer_labels(run_train, tmp_path, written):
    """Labels written as floats (pandas' 1.0), booleans, strings of ints, 1e0 or class names, in
    the training and the validation file, train through train.py with the integer run's result.
    Before: a traceback in training_step ('expected target dtype to be Long ... got Float')."""
    one, zero = {
        "1.0/0.0": ("1.0", "0.0"), "true/false": ("true", "false"), '"1"/"0"': ('"1"', '"0"'),
        "1e0/0e0": ("1e0", "0e0"), "positive/negative": ('"positive"', '"negative"'),
    }[written]  # fmt: skip

    def folder(name, one, zero):
        path = tmp_path / name
        path.mkdir()
        for split, n in (("train", 40), ("validation", 20)):
            rows = [
                f'{{"sentence": "film number {i} was {"good" if i % 2 else "bad"}", '
                f'"label": {one if i % 2 else zero}}}\n'
                for i in range(n)
            ]
            (path / f"{split}.jsonl").write_text("".join(rows))
        return path

    def train(data, run):  # the whole train.py path in this process (compose + run)
        return run_train("task=sst2", "encoder=tiny", f"data.path={data}", "data.num_train=20",
                         "trainer.max_steps=2", "trainer.val_check_interval=2", "logger=none",
                         "save_model=false", f"hydra.job.name={run}")  # fmt: skip

    ints = train(folder("ints", "1", "0"), "ints_run")
    other = train(folder("other", one, zero), "other_run")
    for key in ("val/acc_best", "test/acc", "final_train_losses"):
        assert other[key] == ints[key], key
