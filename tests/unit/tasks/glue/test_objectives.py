import math

import pytest
import torch
import torch.nn.functional as F

from moo_lightning.tasks.glue.objectives import (
    CrossEntropySCL,
    MOOContrastive,
    pos_neg_losses,
    supervised_contrastive_loss,
)


def loop_pos_neg(z, labels, tau):
    """Eqs 2–3 with the ∓1/τ shifts, written as the per-class loops of the paper."""
    h = F.normalize(z.double(), dim=-1)
    S = h @ h.T
    pos_terms, neg_terms = [], []
    for k in sorted(set(labels.tolist())):
        P = [i for i in range(len(labels)) if labels[i] == k]
        Q = [i for i in range(len(labels)) if labels[i] != k]
        if len(P) >= 2:
            acc = 0.0
            for i in P:
                vals = [math.exp((S[i, p] - 1) / tau) for p in P if p != i]
                acc += -math.log(sum(vals) / len(vals))
            pos_terms.append(acc / len(P))
        if Q:
            acc = 0.0
            for i in P:
                vals = [math.exp((S[i, n] + 1) / tau) for n in Q]
                acc += math.log(sum(vals) / len(vals))
            neg_terms.append(acc / len(P))
    return sum(pos_terms) / len(pos_terms), sum(neg_terms) / len(neg_terms)


@pytest.mark.parametrize("tau", [0.1, 0.3, 0.9])
@pytest.mark.parametrize("classes", [2, 3])
def test_pos_neg_losses_match_the_per_class_loop(tau, classes):
    for trial in range(10):
        g = torch.Generator().manual_seed(trial)
        labels = torch.randint(0, classes, (12,), generator=g)
        labels[:classes] = torch.arange(classes)  # every class present
        labels[classes] = 0  # class 0 has a pair
        z = torch.randn(12, 8, generator=g, dtype=torch.float64)
        l_pos, l_neg = pos_neg_losses(z, labels, tau)
        e_pos, e_neg = loop_pos_neg(z, labels, tau)
        assert l_pos.item() == pytest.approx(e_pos, rel=1e-10)
        assert l_neg.item() == pytest.approx(e_neg, rel=1e-10)
        assert l_pos.item() >= 0 and l_neg.item() >= 0


def test_zero_at_the_ideal_geometry_and_stable_at_small_tau():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    l_pos, l_neg = pos_neg_losses(z, torch.tensor([0, 0, 1, 1]), 0.05)
    assert l_pos.item() == pytest.approx(0.0, abs=1e-6) and l_neg.item() == pytest.approx(
        0.0, abs=1e-6
    )
    big = torch.randn(16, 4) * 1e4
    l_pos, l_neg = pos_neg_losses(big, torch.arange(16) % 2, 0.01)
    assert torch.isfinite(l_pos) and torch.isfinite(l_neg)


def test_degenerate_batches_raise_clear_errors():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="single class"):
        pos_neg_losses(z, torch.zeros(4, dtype=torch.long), 0.3)
    with pytest.raises(ValueError, match="no class has two members"):
        pos_neg_losses(z, torch.arange(4), 0.3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        pos_neg_losses(z, torch.tensor([0, 0, 1, 1]), 0.0)
    with pytest.raises(ValueError, match=r"lam must lie in \[0, 1\]"):
        MOOContrastive(lam=1.5)


def test_gunel_scl_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    z, labels, tau = (
        torch.randn(10, 5, generator=g, dtype=torch.float64),
        torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 1, 3]),
        0.3,
    )
    h = F.normalize(z, dim=-1)
    S = h @ h.T
    terms = []
    for i in range(10):
        P = [p for p in range(10) if p != i and labels[p] == labels[i]]
        if not P:
            continue
        denom = sum(math.exp(S[i, a] / tau) for a in range(10) if a != i)
        terms.append(-sum(math.log(math.exp(S[i, p] / tau) / denom) for p in P) / len(P))
    assert supervised_contrastive_loss(z, labels, tau).item() == pytest.approx(
        sum(terms) / len(terms)
    )


def test_contrastive_terms_move_the_encoder():
    """λ = 1 removes CE: whatever gradient reaches the encoder comes from ℓ_pos / ℓ_neg / SCL."""
    from moo_lightning.tasks.glue.encoders import Backbone, TextClassifier

    backbone = Backbone("tiny")
    model = TextClassifier(backbone, num_labels=2)
    enc = backbone.tokenizer(
        ["a good film", "a great movie", "a dull plot", "poor acting"],
        padding=True,
        return_tensors="pt",
    )
    labels = torch.tensor([1, 1, 0, 0])
    logits, feats = model(enc["input_ids"], enc["attention_mask"])
    for objective in (MOOContrastive(lam=1.0), CrossEntropySCL(lam=1.0)):
        losses = objective(logits, feats, labels)
        for loss in losses:
            grads = torch.autograd.grad(
                loss, list(backbone.encoder.parameters()), retain_graph=True, allow_unused=True
            )
            total = sum(g.abs().sum() for g in grads if g is not None)
            assert total > 0


def test_classifier_starts_in_train_mode_even_from_pretrained():
    from moo_lightning.tasks.glue.encoders import Backbone, TextClassifier

    backbone = Backbone("tiny")
    backbone.encoder.eval()  # as from_pretrained returns it
    model = TextClassifier(backbone, num_labels=2)
    assert all(m.training for m in model.modules())


def test_global_batch_is_the_local_batch_without_ddp():
    from moo_lightning.tasks.glue.objectives import gather_global_batch

    z, labels = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    z_all, y_all = gather_global_batch(z, labels)
    assert z_all is z and y_all is labels
    logits = torch.randn(6, 3)
    for cls in (MOOContrastive, CrossEntropySCL):
        torch.testing.assert_close(
            cls(0.4, 0.2, global_batch=True)(logits, z, labels), cls(0.4, 0.2)(logits, z, labels)
        )
