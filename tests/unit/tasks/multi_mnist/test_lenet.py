"""Multi-LeNet: shapes and parameter count; the stacked members equal the separate ones and stay
independent."""

import torch
import torch.nn.functional as F

from moo_lightning.tasks.multi_mnist.lenet import MultiLeNet, StackedMultiLeNet, member_seed


def test_multi_lenet_shapes_and_parameter_count():
    net = MultiLeNet(seed=0)
    x = torch.rand(3, 1, 36, 36)
    assert net.features(x).shape == (3, 50)
    assert net(x).shape == (3, 2, 10)
    side = ((36 - 9 + 1) // 2 - 5 + 1) // 2  # 36 → 28 → 14 → 10 → 5
    assert side == 5
    expected = (10 * 1 * 9 * 9 + 10) + (20 * 10 * 5 * 5 + 20) + (20 * side**2 * 50 + 50)
    expected += 2 * (50 * 10 + 10)
    assert sum(p.numel() for p in net.parameters()) == expected == 31_910
    # seeded construction is reproducible and leaves the caller's random state alone
    state = torch.get_rng_state()
    twin = MultiLeNet(seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), twin.parameters()))


def test_stacked_lenet_matches_its_members_and_keeps_them_independent():
    stack = StackedMultiLeNet(3, seed=7)
    assert len(stack) == 3 and all(p.shape[0] == 3 for p in stack.parameters())
    x = torch.rand(4, 1, 36, 36)
    out = stack(x)
    assert out.shape == (3, 4, 2, 10)
    members = [stack.member(i) for i in range(3)]
    for i, net in enumerate(members):
        assert torch.allclose(out[i], net(x), atol=1e-5)
        fresh = MultiLeNet(seed=member_seed(7, i))  # initialised as N seeded MultiLeNets
        assert all(torch.equal(p, q) for p, q in zip(net.parameters(), fresh.parameters()))
    assert not torch.equal(members[0].conv1.weight, members[1].conv1.weight)
    # one batch per member
    xs = torch.rand(3, 2, 1, 36, 36)
    assert torch.allclose(stack(xs)[2], members[2](xs[2]), atol=1e-5)
    # member 1's loss reaches only slice 1, and that slice is the plain member's gradient
    y = torch.randint(0, 10, (4, 2))
    F.cross_entropy(out[1].reshape(-1, 10), y.reshape(-1)).backward()
    F.cross_entropy(members[1](x).reshape(-1, 10), y.reshape(-1)).backward()
    plain = dict(members[1].named_parameters())
    for name, p in stack.stacked_parameters().items():
        assert p.grad[0].abs().max() == 0 and p.grad[2].abs().max() == 0
        assert torch.allclose(p.grad[1], plain[name].grad, atol=1e-6)
    assert any(p.grad[1].abs().max() > 0 for p in stack.parameters())
    # stacking given networks keeps their values
    again = StackedMultiLeNet(members)
    assert torch.allclose(again(x), out.detach(), atol=1e-5)


def test_features_come_with_the_same_logits_bit_for_bit():
    stack = StackedMultiLeNet(2, seed=3)
    x = torch.rand(4, 1, 36, 36)
    z, logits = stack(x, with_features=True)
    assert z.shape == (2, 4, 50)
    assert torch.equal(logits, stack(x))  # runs recorded before the features keep their values
    assert torch.allclose(z[1], stack.member(1).features(x), atol=1e-5)  # vmapped: round-off
