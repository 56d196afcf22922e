import numpy as np
import torch

from moo_lightning.combiners import LinearScalarization


def test_ls_normalises_preference_and_needs_no_gram():
    ls = LinearScalarization()
    assert not ls.needs_gram
    res = ls(torch.tensor([3.0, 1.0, 2.0]), None, [1.0, 1.0, 2.0])
    np.testing.assert_allclose(res.weights.numpy(), [0.25, 0.25, 0.5])
    assert set(res.diagnostics) == {"combine_ms"} and not res.fallback
