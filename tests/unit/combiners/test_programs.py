"""EPO's LPs, PNG's dual and CAGrad's inner SOCP (m > 2) are cvxpy programs built once per m: a step
substitutes parameters, it never builds (nor compiles) the program again."""

import numpy as np
import pytest
import torch

from moo_lightning.combiners import EPO, PNG, CAGrad
from moo_lightning.combiners import cagrad as cagrad_module
from moo_lightning.combiners import png as png_module


@pytest.mark.parametrize(
    "make, module, program", [(PNG, png_module, "_DualQP"), (CAGrad, cagrad_module, "_InnerSOCP")]
)
def test_a_program_is_built_once_per_number_of_objectives(make, module, program, monkeypatch):
    built = []
    original = getattr(module, program)

    class Counting(original):
        def __init__(self, m):
            built.append(m)
            super().__init__(m)

    monkeypatch.setattr(module, program, Counting)
    comb = make()
    rng = np.random.default_rng(0)
    for _ in range(6):
        A = rng.standard_normal((4, 6))
        comb(torch.rand(4) + 0.5, torch.as_tensor(A @ A.T), [0.25] * 4, step=0)
    assert built.count(4) <= 1  # before: PNG built a new program at every step for m > 2


@pytest.mark.parametrize("make", [PNG, CAGrad, EPO])
def test_a_fresh_process_solves_bit_for_bit_as_a_long_running_one(make):
    """Programs are primed when built: a new combiner's first solve (a resumed run) goes down the
    same parameter-substitution path as the tenth solve of a long-running one."""
    rng = np.random.default_rng(1)
    problems = []
    for _ in range(4):
        A = rng.standard_normal((4, 6))
        problems.append((torch.rand(4, dtype=torch.float64) + 0.5, torch.as_tensor(A @ A.T)))
    pref = [0.1, 0.2, 0.3, 0.4]
    long_running = make()
    for losses, K in problems[:-1]:
        long_running(losses, K, pref, step=0)
    resumed = make()
    losses, K = problems[-1]
    a = long_running(losses, K, pref, step=3).weights
    b = resumed(losses, K, pref, step=3).weights
    assert torch.equal(a, b)
    assert long_running._programs.built() == resumed._programs.built() == [4]
