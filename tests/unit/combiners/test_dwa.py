"""combiner=dwa: DWA over periods of steps; cross-check with TorchJD DWA; exact state round trip."""

import io

import numpy as np
import pytest
import torch
from torchjd.scalarization import DWA

from moo_lightning.combiners import DynamicWeightAverage, SolverError


def _w(comb, losses):
    return comb(torch.as_tensor(losses, dtype=torch.float64), None, np.ones(len(losses))).weights


def _torchjd_weights(scalarizer, losses):
    ell = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(scalarizer(ell), ell)
    return grad.numpy()


@pytest.mark.parametrize(("m", "period", "temperature"), [(2, 1, 2.0), (3, 4, 0.5), (5, 7, 10.0)])
def test_matches_torchjd_dwa_stepped_every_period(m, period, temperature):
    rng = np.random.default_rng(m)
    ours = DynamicWeightAverage(temperature=temperature, period=period)
    ref = DWA(temperature=temperature)
    worst = 0.0
    for step in range(10 * period):
        losses = rng.uniform(0.05, 2.0, m) * np.exp(-0.01 * step)
        w = _w(ours, losses).numpy()
        r = _torchjd_weights(ref, losses)
        worst = max(worst, float(np.abs(w - r).max()))
        if (step + 1) % period == 0:
            ref.step()  # TorchJD's end of an "epoch"
    assert worst <= 1e-12, worst  # measured: 4.4e-16


def test_hand_computed():
    """period 1: L(0) = (1, 1), L(1) = (0.5, 1) → ρ = (0.5, 1); T = 0.5 → softmax(1, 2)·2."""
    comb = DynamicWeightAverage(temperature=0.5, period=1)
    np.testing.assert_array_equal(_w(comb, [1.0, 1.0]).numpy(), [1, 1])
    np.testing.assert_array_equal(_w(comb, [0.5, 1.0]).numpy(), [1, 1])
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(_w(comb, [9.0, 9.0]).numpy(), 2 * e / e.sum(), rtol=1e-15)


def test_state_round_trip_is_exact_through_torch_save():
    rng = np.random.default_rng(0)
    seq = [rng.uniform(0.1, 1.0, 3) for _ in range(40)]
    full = DynamicWeightAverage(period=6)
    ref = [_w(full, losses).numpy() for losses in seq]
    first = DynamicWeightAverage(period=6)
    for losses in seq[:23]:  # stop inside a period
        _w(first, losses)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = DynamicWeightAverage(period=6)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert resumed.state_dict() == first.state_dict()
    for k, losses in enumerate(seq[23:], start=23):
        np.testing.assert_array_equal(_w(resumed, losses).numpy(), ref[k])
    with pytest.raises(ValueError, match="dwa state must have the keys"):
        resumed.load_state_dict({"phi": 1})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0}, r"combiner.temperature must be a finite number > 0.0. Found 0"),
        ({"temperature": "2"}, r"combiner.temperature must be a finite number > 0.0"),
        ({"period": 0}, r"combiner.period must be an integer >= 1 \(steps\). Found 0"),
        ({"period": 2.5}, r"combiner.period must be an integer >= 1 \(steps\). Found 2.5"),
        ({"period": True}, r"combiner.period must be an integer >= 1"),
    ],
)
def test_bad_settings_are_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicWeightAverage(**kwargs)


def test_changing_m_and_zero_means_are_refused():
    comb = DynamicWeightAverage(period=1)
    _w(comb, [0.5, 0.5])
    with pytest.raises(ValueError, match="was tracking 2 objectives and now got 3"):
        _w(comb, [0.5, 0.5, 0.5])
    comb = DynamicWeightAverage(period=1)
    _w(comb, [0.0, 0.5])
    _w(comb, [0.1, 0.5])
    with pytest.raises(SolverError, match="a period mean loss is 0"):
        _w(comb, [0.1, 0.5])
