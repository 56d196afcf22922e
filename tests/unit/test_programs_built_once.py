"""PNG's dual and CAGrad's inner SOCP (m > 2) are cvxpy programs built once per m: a step
substitutes parameters, it never builds (nor compiles) the program again."""

import numpy as np
import pytest
import torch

from moo_lightning.combiners import PNG, CAGrad
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
