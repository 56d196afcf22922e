"""train.py itself: the command line it accepts and how it tells bad input from bugs (the
bad-input table is test_bad_input.py)."""

import pytest


def test_argv_normalisation():
    from moo_lightning.cli.train import normalise_argv

    argv = ["train.py", "task=qnli", "combiner=epo", "-m", "seed=0-9"]
    assert normalise_argv(argv) == [
        "train.py",
        "-m",
        "task=qnli",
        "combiner=epo",
        "seed=range(0,10)",
    ]
    assert normalise_argv(["t", "seed=3"]) == ["t", "seed=3"]
    with pytest.raises(SystemExit, match="add -m"):
        normalise_argv(["t", "seed=0-9"])
    with pytest.raises(SystemExit, match="range end"):
        normalise_argv(["t", "-m", "seed=5-1"])
