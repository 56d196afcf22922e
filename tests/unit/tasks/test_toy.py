import numpy as np
import pytest

from moo_lightning.tasks import toy


def test_front_endpoints_and_independence_of_n():
    np.testing.assert_allclose(toy.front_point(1.0), [0.0, 1 - np.exp(-4)])
    np.testing.assert_allclose(toy.front_point(-1.0), [1 - np.exp(-4), 0.0])
    import torch

    for n in (2, 10, 50):
        eta = torch.full((n,), n**-0.5, dtype=torch.float64)
        np.testing.assert_allclose(toy._toy_losses(0.3 * eta).numpy(), toy.front_point(0.3))


@pytest.mark.parametrize("r1", [0.2, 0.4, 0.6, 0.8])
def test_ray_point(r1):
    p = toy.ray_point(r1)
    assert r1 * p[0] == pytest.approx((1 - r1) * p[1], abs=1e-12)


def test_best_hypervolume_matches_a_direct_search():
    """DP optimum on the grid vs. Nelder–Mead over the front parameters, both scored by moocore."""
    from scipy.optimize import minimize

    best = toy.best_hypervolume(3)
    res = minimize(
        lambda t: -toy.hypervolume(toy.front_point(np.clip(t, -1, 1))),
        [-0.5, 0.0, 0.5],
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-12},
    )
    assert best == pytest.approx(-res.fun, rel=1e-4)
    assert toy.best_hypervolume(1) == pytest.approx(
        max(toy.hypervolume(p) for p in toy.exact_front()), rel=1e-9
    )


def test_igd_plus_zero_on_the_front():
    assert toy.igd_plus(toy.exact_front()) == pytest.approx(0.0, abs=1e-12)


def test_minimise_on_front_takes_criteria_that_cannot_be_vectorised():
    import torch

    from moo_lightning.tasks.toy import front_point, minimise_on_front

    def branchy(loss, r):  # Python branching on a value: vmap refuses it
        return (loss[0] - 0.5) ** 2 if float(loss[0]) > 0.2 else torch.tensor(9.0)

    pts = front_point(np.linspace(-1.0, 1.0, 2001))
    expected = pts[np.argmin([(p[0] - 0.5) ** 2 if p[0] > 0.2 else 9.0 for p in pts])]
    np.testing.assert_allclose(minimise_on_front(branchy, 0.3, num=2001), expected)
