"""The report scripts' shared statistics (moo_lightning/sweeps.py)."""

import math

import pytest

from moo_lightning.sweeps import adjusted_p, paired_p


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
