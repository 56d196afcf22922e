import numpy as np
import pytest

from moo_lightning.data import ClassBalancedBatchSampler, few_shot_indices


def test_few_shot_sampling_is_balanced_seeded_and_validated():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    a = few_shot_indices(labels, 20, 3, seed=1, balanced=True)
    assert len(a) == 20 and sorted(np.bincount(labels[a])) == [6, 7, 7]
    assert np.array_equal(a, few_shot_indices(labels, 20, 3, seed=1, balanced=True))
    assert not np.array_equal(a, few_shot_indices(labels, 20, 3, seed=2, balanced=True))
    with pytest.raises(ValueError, match="num_train=200 exceeds the 100"):
        few_shot_indices(labels, 200, 3, 0, True)
    with pytest.raises(ValueError, match="num_train=4 is too small"):
        few_shot_indices(labels, 4, 3, 0, True)


@pytest.mark.parametrize(
    ("n", "classes", "batch"), [(20, 2, 16), (20, 3, 16), (50, 3, 16), (100, 2, 16)]
)
def test_batches_hold_two_of_every_class(n, classes, batch):
    labels = np.arange(n) % classes
    sampler = ClassBalancedBatchSampler(labels, batch, seed=0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert all(len(b) <= batch for b in batches)
        assert all(np.bincount(labels[b], minlength=classes).min() >= 2 for b in batches)


def test_argv_normalisation():
    from train import normalise_argv

    argv = ["train.py", "task=qnli", "combiner=epo", "-m", "seed=0-9"]
    assert normalise_argv(argv) == [
        "train.py",
        "-m",
        "task=qnli",
        "combiner=epo",
        "seed=range(0,10)",
    ]
    assert normalise_argv(["t", "seed=3"]) == ["t", "seed=3"]
    with pytest.raises(SystemExit, match="add -m"):
        normalise_argv(["t", "seed=0-9"])
    with pytest.raises(SystemExit, match="range end"):
        normalise_argv(["t", "-m", "seed=5-1"])
