"""The discrepancy F and the discriminator: signs, what F's gradient reaches, D's own step."""

import math

import pytest
import torch

from moo_lightning.combiners import PNG, LinearScalarization
from moo_lightning.tasks.dg.module import (
    JigsawModule,
    confusion_loss,
    discrepancy,
    discriminator_loss,
)
from moo_lightning.tasks.dg.nets import Discriminator, ResNet18


def _features(n=64, d=8, gap=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    ordered = torch.arange(n) % 4 != 0
    z = torch.randn(n, d, generator=g)
    z[ordered, 0] += gap  # the ordered images' features sit apart from the shuffled ones'
    return z, ordered


def _trained_discriminator(z, ordered, steps=200):
    torch.manual_seed(0)
    D = Discriminator(z.shape[1], 32)
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        discriminator_loss(D(z), ordered).backward()
        opt.step()
    return D


def test_f_is_minus_the_discriminator_loss_and_descending_it_aligns_the_features():
    z, ordered = _features()
    D = _trained_discriminator(z, ordered)
    L_D = float(discriminator_loss(D(z), ordered).detach())
    assert L_D < 0.2  # separable features: D tells them apart
    D.zero_grad(set_to_none=True)
    zz = z.clone().requires_grad_(True)
    F = discrepancy("adversarial", D, zz, ordered)
    assert float(F.detach()) == pytest.approx(-L_D, rel=1e-6)
    F.backward()
    assert all(p.grad is None for p in D.parameters())  # F's gradient never reaches D
    # a step down F makes D's loss larger (the features harder to tell apart)
    after = float(discriminator_loss(D(z - 0.5 * zz.grad), ordered).detach())
    assert after > L_D
    # and the discriminator's own step lowers its loss (opposite sign)
    assert float(discriminator_loss(D(z), ordered).detach()) < math.log(2)


def test_the_confusion_criterion_is_zero_exactly_at_a_discriminator_that_says_half():
    z, ordered = _features()
    D = Discriminator(8, 16)
    for p in D.parameters():
        torch.nn.init.zeros_(p)  # logits 0: p = ½ for every image
    assert float(discrepancy("confusion", D, z, ordered)) == pytest.approx(0.0, abs=1e-7)
    D = _trained_discriminator(z, ordered)
    assert float(confusion_loss(D(z), ordered)) > 0.1


def test_the_discriminator_balances_the_two_kinds_of_image():
    logits = torch.tensor([10.0, 10.0, 10.0, 10.0])  # says "ordered" to all
    ordered = torch.tensor([True, True, True, False])
    # 3/4 ordered: unbalanced BCE would be ~2.5, the balanced one counts the shuffled half
    assert float(discriminator_loss(logits, ordered)) == pytest.approx(0.5 * 10.0, rel=1e-3)


def _module(combiner, **kw):
    return JigsawModule(
        combiner, [1.0, 0.7], num_classes=10, num_permutations=30, in_channels=1, width=4, **kw
    )


def test_the_discriminator_is_not_theta():
    m = _module(PNG(), criterion="adversarial")
    theta = {id(p) for p in m.trainable_parameters()}
    assert not theta & {id(p) for p in m.discriminator.parameters()}
    assert theta == {id(p) for n, p in m.named_parameters() if not n.startswith("discriminator")}


def test_objectives_and_criterion_on_a_batch():
    m = _module(LinearScalarization(), criterion="adversarial", criterion_weight=0.1)
    torch.manual_seed(0)
    batch = {
        "images": torch.randn(16, 1, 30, 30),
        "labels": torch.randint(0, 10, (16,)),
        "jigsaw": torch.tensor([0] * 12 + [3, 7, 30, 1]),
    }
    losses = m.objectives(batch)
    assert losses.shape == (2,) and torch.isfinite(losses).all()
    F = m.parameter_criterion()
    assert F.requires_grad and float(F) < 0  # −(a BCE)
    assert m._d_batch is not None and not m._d_batch[0].requires_grad
    # a recomputation of the losses without gradients (FAMO's after the step) leaves D the
    # step's own features
    kept = m._d_batch[0]
    with torch.no_grad():
        m.objectives({**batch, "images": batch["images"] + 1.0})
    assert m._d_batch[0] is kept
    # a batch with one kind of image: D has nothing to compare and takes no step
    m.objectives({**batch, "jigsaw": torch.zeros(16, dtype=torch.long)})
    assert m._d_batch is None and m.discriminator_step() is None
    # DeepAll: one objective, no criterion
    d = JigsawModule(LinearScalarization(), [1.0], 10, 30, in_channels=1, width=4, tasks="object")
    assert d.objectives(batch).shape == (1,) and d.discriminator is None


def test_resnet18_has_torchvision_names_and_loads_a_state_dict(tmp_path):
    net = ResNet18(3)
    names = list(net.state_dict())
    assert names[:2] == ["conv1.weight", "bn1.weight"]
    assert "layer4.1.bn2.running_var" in names and "layer2.0.downsample.0.weight" in names
    assert sum(p.numel() for p in net.parameters()) == 11_176_512  # torchvision's, less fc
    state = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v
             for k, v in net.state_dict().items()}  # fmt: skip
    state["fc.weight"] = torch.zeros(1000, 512)  # a torchvision file carries its classifier
    torch.save(state, tmp_path / "r18.pth")
    loaded = ResNet18(3, weights=str(tmp_path / "r18.pth"))
    assert float(loaded.conv1.weight[0, 0, 0, 0]) == 0.5
    torch.save({"conv1.weight": state["conv1.weight"]}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a ResNet-18 state dict"):
        ResNet18(3, weights=str(tmp_path / "bad.pth"))
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        ResNet18(3, weights=str(tmp_path / "none.pth"))


def test_a_criterion_of_the_parameters_with_another_scope_than_all_is_one_line():
    with pytest.raises(ValueError, match="criterion=adversarial .* needs module.gradient_scope"):
        _module(LinearScalarization(), criterion="adversarial", gradient_scope="shared")
    shared = _module(PNG(), gradient_scope="shared")  # JiGen without a criterion: fine
    batch = {
        "images": torch.randn(8, 1, 30, 30),
        "labels": torch.randint(0, 10, (8,)),
        "jigsaw": torch.tensor([0] * 6 + [3, 7]),
    }
    losses = shared.objectives(batch)
    assert not isinstance(shared.write_gradients(losses[None], losses.detach()[None]), str)
    assert shared._shared and not all(shared._shared)  # the heads are apart from the backbone
