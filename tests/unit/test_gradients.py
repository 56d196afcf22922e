"""Per-objective gradients, Gram matrices (one model and stacked members) and writing directions."""

import torch

from moo_lightning.gradients import (
    gram_matrix,
    member_gram_matrices,
    objective_grads,
    unreached,
    write_direction,
    write_member_directions,
)


def _problem(members=None):
    torch.manual_seed(0)
    shape = (3, 4) if members is None else (members, 3, 4)
    w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    unused = torch.zeros(2, dtype=torch.float64, requires_grad=True) if members is None else None
    x = torch.randn(5, 4, dtype=torch.float64)
    out = x @ w.transpose(-1, -2)  # (5, 3) or (N, 5, 3)
    losses = torch.stack([out[..., 0].pow(2).mean(-1), out[..., 1].abs().mean(-1)], dim=-1)
    return w, unused, losses


def test_objective_grads_give_zeros_where_an_objective_does_not_reach():
    w, unused, losses = _problem()
    (direct,) = torch.autograd.grad(losses[1], w, retain_graph=True)
    grads = objective_grads(losses, [w, unused])
    assert len(grads) == 2 and all(torch.equal(g[1], torch.zeros(2)) for g in grads)
    torch.testing.assert_close(grads[1][0], direct)
    # a parameter no objective reaches keeps no gradient (as after loss.backward()), so the
    # optimizer leaves it and its moments alone: AdamW's decay moved it under Gram combiners only
    assert all(unreached(g[1]) for g in grads) and not unreached(grads[0][0])
    unused.grad = torch.ones(2, dtype=torch.float64)
    write_direction(grads, torch.tensor([0.5, 0.5]), [w, unused])
    assert unused.grad is None and w.grad is not None
    with torch.no_grad():
        unused.fill_(1.0)
    torch.optim.AdamW([w, unused], lr=0.1, weight_decay=0.1).step()
    assert torch.equal(unused.detach(), torch.ones(2, dtype=torch.float64))  # a zero: 0.99


def test_a_direction_is_right_when_autograd_shares_or_expands_gradient_buffers():
    """autograd hands one buffer to both inputs of an addition and an expanded (stride-0)
    gradient to a parameter used through a sum; the direction is built in place in those
    buffers, so each parameter's must be its own (before, p's and q's were scaled twice over, or
    the in-place product raised)."""
    torch.manual_seed(0)
    p, q, r = (torch.randn(3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    x = torch.randn(3, dtype=torch.float64)

    def losses():
        h = (p + q) * x + r.sum()  # p, q: one shared buffer; r: an expanded one
        return torch.stack([h.pow(2).sum(), (h - 1).pow(2).sum()])

    w = torch.tensor([0.3, 0.7], dtype=torch.float64)
    want = torch.autograd.grad((w * losses()).sum(), [p, q, r])
    write_direction(objective_grads(losses(), [p, q, r]), w, [p, q, r])
    for param, expected in zip((p, q, r), want):
        torch.testing.assert_close(param.grad, expected)


def test_gram_matrix_is_the_inner_products_of_the_flat_gradients():
    w, unused, losses = _problem()
    grads = objective_grads(losses, [w, unused])
    G = torch.stack([torch.cat([g.reshape(-1) for g in row]) for row in grads])
    torch.testing.assert_close(gram_matrix(grads), G @ G.T)


def test_member_grams_and_directions_equal_each_members_own():
    n = 3
    w, _, losses = _problem(members=n)  # losses (N, 2), member i uses w[i] only
    grads = objective_grads(losses.sum(0), [w])
    K = member_gram_matrices(grads)
    weights = torch.tensor([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    for i in range(n):
        own = [[g[0][i].clone()] for g in grads]
        torch.testing.assert_close(K[i], gram_matrix(own))
    expected = torch.stack(
        [weights[i, 0] * grads[0][0][i] + weights[i, 1] * grads[1][0][i] for i in range(n)]
    )
    write_member_directions(grads, weights, [w])
    torch.testing.assert_close(w.grad, expected)


def test_write_direction_overwrites_the_gradient():
    w, unused, losses = _problem()
    grads = objective_grads(losses, [w, unused])
    w.grad = torch.full_like(w, 7.0)
    expected = 0.25 * grads[0][0] + 0.75 * grads[1][0]
    write_direction(grads, torch.tensor([0.25, 0.75]), [w, unused])
    torch.testing.assert_close(w.grad, expected)
