"""The report scripts' shared statistics (moo_lightning/sweeps.py)."""

import math

import pytest

from moo_lightning.record import RunRecord
from moo_lightning.sweeps import (
    adjusted_p,
    code_label,
    code_versions,
    load_runs,
    paired_difference,
    paired_p,
)


def test_benjamini_hochberg_by_hand_and_missing_p_values_kept_in_place():
    # sorted 0.01, 0.03, 0.04 over n = 3: 0.03, 0.045 → 0.04 (monotone from the top), 0.04
    q = adjusted_p([0.01, 0.04, None, 0.03, math.nan])
    assert q[2] is None and q[4] is None
    assert q[0] == pytest.approx(0.03) and q[1] == pytest.approx(0.04)
    assert q[3] == pytest.approx(0.04)
    assert adjusted_p([None]) == [None] and adjusted_p([]) == []
    assert adjusted_p([0.2]) == [pytest.approx(0.2)]  # a family of one is not adjusted


def test_paired_p_exact_ties_and_too_few_pairs():
    assert paired_p({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}) == 1.0
    assert paired_p({0: 1.0}, {0: 2.0}) is None
    assert 0.0 < paired_p({0: 1.0, 1: 2.0, 2: 3.5}, {0: 1.1, 1: 1.8, 2: 3.0}) < 1.0


def test_paired_difference_is_the_t_interval_of_the_differences():
    from scipy import stats

    x, y = {0: 3.0, 1: 5.0, 2: 4.0, 3: 9.0}, {0: 1.0, 1: 1.0, 2: 2.0, 3: 2.0, 4: 7.0}
    d = [2.0, 4.0, 2.0, 7.0]  # seed 4 has no pair
    mean, low, high = paired_difference(x, y)
    half = stats.t.ppf(0.975, 3) * stats.tstd(d) / 2
    assert mean == pytest.approx(3.75)
    assert (low, high) == (pytest.approx(3.75 - half), pytest.approx(3.75 + half))
    assert paired_difference({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5}) == (0.5, 0.5, 0.5)
    assert paired_difference({0: 1.0}, {0: 2.0}) is None


def test_a_job_folder_without_a_record_is_listed_with_its_logs_last_error(tmp_path):
    for name, log in (("crashed", "[x][ERROR] - RuntimeError: out of memory\nlater line\n"),
                      ("running", "[x][INFO] - step 10\n")):  # fmt: skip
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "config.yaml").write_text("seed: 0\n")
        (tmp_path / name / "train.log").write_text(log)
    (tmp_path / "not_a_job").mkdir()  # no .hydra: not a job folder
    kept, left_out = load_runs(tmp_path)
    why = dict(left_out)
    assert kept == [] and sorted(why) == ["crashed", "running"]
    assert why["running"] == "no metrics.json (still running, or stopped before writing its record)"
    assert why["crashed"].endswith("; [x][ERROR] - RuntimeError: out of memory")


def test_code_versions_name_each_commit_and_warn_when_several_are_averaged():
    def rec(code):
        return RunRecord(code=code)

    labels = [
        code_label(rec({"version": "0.4.0", "commit": "a" * 40, "dirty": False})),
        code_label(rec({"version": "0.4.0", "commit": "a" * 40, "dirty": False})),
        code_label(rec({"version": "0.4.0", "commit": None, "dirty": None})),
        code_label(rec(None)),
    ]
    line = code_versions(labels)
    assert line == (
        "Code: aaaaaaaaaa (2 runs), not recorded (1 run), version 0.4.0 (no git checkout) "
        "(1 run). Runs of several code versions are averaged together."
    )
    assert "several" not in code_versions(labels[:2] + labels[3:])
