"""combiner=uw: weights and s.grad equal TorchJD UW's autograd gradients; training s; state."""

import io

import numpy as np
import pytest
import torch
from torchjd.scalarization import UW

from moo_lightning.combiners import UncertaintyWeighting


def _call(comb, losses):
    return comb(torch.as_tensor(losses, dtype=torch.float64), None, np.ones(len(losses)))


@pytest.mark.parametrize("m", [1, 2, 4])
def test_weights_and_log_var_gradient_match_torchjd_uw(m):
    rng = np.random.default_rng(m)
    comb = UncertaintyWeighting(num_objectives=m)
    (s,) = comb.parameters()
    assert s.dtype == torch.float32 and s.requires_grad and torch.equal(s, torch.zeros(m))
    ref = UW(m)
    worst_w = worst_g = 0.0
    for _ in range(20):
        values = rng.uniform(-2, 2, m).astype(np.float32)
        with torch.no_grad():
            s.copy_(torch.from_numpy(values))
            ref.log_var.copy_(torch.from_numpy(values))
        losses = rng.uniform(0.01, 5.0, m)
        w = _call(comb, losses).weights.numpy()
        ell = torch.tensor(losses, dtype=torch.float32, requires_grad=True)
        g_ell, g_s = torch.autograd.grad(ref(ell), [ell, ref.log_var])
        worst_w = max(worst_w, float(np.abs(w - g_ell.numpy()).max() / np.abs(w).max()))
        worst_g = max(worst_g, float(np.abs(s.grad.numpy() - g_s.numpy()).max()))
        assert s.grad.dtype == torch.float32
    # TorchJD computes in float32: measured 5.5e-8 relative on w, 9.5e-7 on s.grad
    assert worst_w <= 1e-6 and worst_g <= 1e-5, (worst_w, worst_g)


def test_hand_computed_and_grad_is_set_not_accumulated():
    comb = UncertaintyWeighting(num_objectives=2)
    res = _call(comb, [0.5, 2.0])
    np.testing.assert_allclose(res.weights.numpy(), [0.5, 0.5])
    (s,) = comb.parameters()
    np.testing.assert_allclose(s.grad.numpy(), [0.25, -0.5])
    _call(comb, [0.5, 2.0])
    np.testing.assert_allclose(s.grad.numpy(), [0.25, -0.5])  # overwritten, not doubled
    assert not comb.needs_gram and not comb.uses_preference


def test_training_s_reaches_exp_s_equal_to_the_loss():
    """At fixed losses, SGD on s converges to e^{s_i} = ℓ_i, so w_i → 1/(2ℓ_i)."""
    comb = UncertaintyWeighting(num_objectives=3)
    opt = torch.optim.SGD(comb.parameters(), lr=0.5)
    losses = [0.1, 1.0, 4.0]
    for _ in range(300):
        opt.zero_grad()
        _call(comb, losses)
        opt.step()
    np.testing.assert_allclose(np.exp(comb.parameters()[0].detach().numpy()), losses, rtol=1e-4)
    w = _call(comb, losses).weights.numpy()
    np.testing.assert_allclose(w, 0.5 / np.array(losses), rtol=1e-4)


def test_state_round_trip_is_exact_and_in_place():
    comb = UncertaintyWeighting(num_objectives=2)
    with torch.no_grad():
        comb.parameters()[0].copy_(torch.tensor([0.3, -1.7]))
    buf = io.BytesIO()
    torch.save(comb.state_dict(), buf)
    buf.seek(0)
    other = UncertaintyWeighting(num_objectives=2)
    param = other.parameters()[0]
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.parameters()[0] is param
    assert torch.equal(param, comb.parameters()[0])
    np.testing.assert_array_equal(
        _call(other, [0.4, 0.9]).weights.numpy(), _call(comb, [0.4, 0.9]).weights.numpy()
    )
    with pytest.raises(ValueError, match="uw state has 3 log-variances, this run 2"):
        other.load_state_dict({"log_var": torch.zeros(3)})


def test_settings_and_m_checks_are_one_line():
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(ValueError, match="combiner.num_objectives must be null or an integer"):
            UncertaintyWeighting(num_objectives=bad)
    lazy = UncertaintyWeighting()
    with pytest.raises(ValueError, match="combiner.num_objectives must be set for uw"):
        lazy.parameters()
    _call(lazy, [0.5, 0.5, 0.5])
    assert lazy.parameters()[0].shape == (3,)
    with pytest.raises(ValueError, match="uw has 2 log-variances .* but got 3 losses"):
        _call(UncertaintyWeighting(num_objectives=2), [0.5, 0.5, 0.5])


def test_the_log_variances_can_have_their_own_learning_rate():
    """combiner.lr: s gets its own param group (scheduled like the others); null keeps the
    optimizer's rate, as before."""
    from moo_lightning.tasks.toy import ToyModule

    for lr, expected in ((None, 1e-5), (0.1, 0.1)):
        module = ToyModule(UncertaintyWeighting(num_objectives=2, lr=lr), [0.5, 0.5])
        module.optimizer_factory = lambda params: torch.optim.SGD(params, lr=1e-5)
        opt = module.configure_optimizers()
        assert [g["lr"] for g in opt.param_groups] == [1e-5, expected]
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="combiner.lr must be a finite number > 0"):
            UncertaintyWeighting(lr=bad)
