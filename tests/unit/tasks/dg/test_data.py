"""Domain generalisation data: the leave-one-domain-out splits of Rotated MNIST (disjoint digits)
and of a PACS-layout folder, training batches of jigsaw-shuffled images (the puzzles themselves:
test_jigsaw.py)."""

import pytest
import torch

from moo_lightning.tasks.dg.data import PACS, JigsawSet, RotatedMNIST, rotate
from moo_lightning.tasks.dg.jigsaw import (
    shuffle_tiles,
)
from tests.helpers import write_digits, write_pacs


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("mnist"), n=600)


def test_rotated_mnist_leaves_one_angle_out_with_disjoint_digits(digits):
    data = RotatedMNIST(path=str(digits), target=30, eval_batch_size=50)
    data.setup()
    train, val, test = (data.splits[k] for k in ("train", "val", "test"))
    assert data.domain_names == ["0", "15", "30", "45", "60", "75"]
    assert set(test.domains.tolist()) == {2}  # the target angle only
    assert 2 not in set(train.domains.tolist()) | set(val.domains.tolist())
    assert len(test) == 100 and len(train) + len(val) == 500
    assert len(val) == 50  # 10% of each source domain
    for d in (0, 1, 3, 4, 5):
        assert (val.domains == d).sum() == 10
    sources = [set(s.tolist()) for s in (train.source, val.source, test.source)]
    assert not (sources[0] & sources[1]) and not (sources[0] & sources[2])
    assert not (sources[1] & sources[2])
    assert len(set().union(*sources)) == 600  # every digit in exactly one domain
    assert train.images.shape[1:] == (1, 30, 30) and train.images.dtype == torch.uint8
    args = data.module_arguments()
    assert args["num_classes"] == 10 and args["num_permutations"] == 30
    assert args["target"] == "30" and "stand-in" in args["source_note"]
    # validation and test batches are ordered; training batches carry puzzles
    batch = next(iter(data.val_dataloader()))
    assert (batch["jigsaw"] == 0).all() and batch["images"].shape == (50, 1, 30, 30)


def test_the_rotation_turns_counter_clockwise():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 7] = 1.0  # right of centre
    y = rotate(x, 90)
    r, c = divmod(int(y.flatten().argmax()), 9)
    assert (r, c) == (1, 4)  # above the centre


def test_training_batches_shuffle_the_images_their_labels_say(digits):
    data = RotatedMNIST(path=str(digits), target=0, batch_size=64, ordered_fraction=0.5)
    data.setup()
    train = data.splits["train"]
    ds = data.train_set(seed=5)
    idx = list(range(64))
    batch = ds[(0, idx)]
    jig = batch["jigsaw"]
    assert 0 < (jig == 0).sum() < 64
    plain = train.images[idx].float().div(255)
    want = shuffle_tiles(plain, data.table[jig])
    assert torch.allclose(batch["images"], (want - 0.5) / 0.5)
    assert torch.equal(ds[(0, idx)]["jigsaw"], jig)  # fixed within an epoch
    assert not torch.equal(ds[(1, idx)]["jigsaw"], jig)  # redrawn each epoch
    assert isinstance(ds, JigsawSet)


def test_rotated_mnist_refuses_an_unknown_target(digits):
    with pytest.raises(ValueError, match="not a domain"):
        RotatedMNIST(path=str(digits), target=90).setup()


def test_pacs_folder_without_lists_splits_each_source_domain(tmp_path):
    root = write_pacs(tmp_path / "pacs", per_class=10, size=9)
    data = PACS(path=str(root), target="sketch", image_size=9, val_size=0.1)
    data.setup()
    assert data.domain_names == ["art_painting", "cartoon", "photo", "sketch"]
    assert data.class_names[0] == "dog" and len(data.class_names) == 7
    s = data.splits
    assert len(s["test"]) == 70 and set(s["test"].domains.tolist()) == {3}
    assert len(s["val"]) == 3 * 7 and len(s["train"]) == 3 * 63
    assert all(p.startswith("sketch/") for p in s["test"].source)
    assert not set(s["train"].source) & set(s["val"].source)
    assert s["train"].images.shape[1:] == (3, 9, 9)
    assert "seeded 10%" in data.source_note
    # labels follow the class folders
    for path, label in zip(s["train"].source, s["train"].labels.tolist()):
        assert data.class_names[label] == path.split("/")[1]


def test_the_validation_size_is_a_fraction_or_a_number_of_images_per_source_domain(digits):
    data = RotatedMNIST(path=str(digits), target=30, val_size=7)
    data.setup()
    assert len(data.splits["val"]) == 5 * 7  # 7 images of each of the 5 source angles
    same = RotatedMNIST(path=str(digits), target=30, val_size=7, cache=False)
    same.setup()  # split_seed fixes the split: the same images, the same permutation set
    assert data.splits["val"].source.tolist() == same.splits["val"].source.tolist()
    assert (data.permutations == same.permutations).all()
    other = RotatedMNIST(path=str(digits), target=30, val_size=7, split_seed=1, cache=False)
    other.setup()
    assert data.splits["val"].source.tolist() != other.splits["val"].source.tolist()
    assert not (data.permutations == other.permutations).all()
    assert other.module_arguments()["permutation_seed"] == 1  # permutations.json says which
    with pytest.raises(ValueError, match="leaves no training image in domain 0"):
        RotatedMNIST(path=str(digits), target=30, val_size=100, cache=False).setup()
    for bad in (0, 1.0, -0.1, float("nan"), True, "10%"):
        with pytest.raises(ValueError, match="data.val_size must be a fraction of each source"):
            RotatedMNIST(path=str(digits), target=30, val_size=bad)


def test_pacs_official_lists_fix_the_validation_images(tmp_path):
    root = write_pacs(tmp_path / "pacs", per_class=4, size=9, split_lists=True)
    data = PACS(path=str(root), target="photo", image_size=9)
    data.setup()
    val = data.splits["val"]
    assert len(val) == 3 * 7 and all(p.endswith("pic_003.png") for p in val.source)
    assert "official crossval" in data.source_note
    assert len(data.splits["test"]) == 28  # the target is tested whole


def test_the_training_order_does_not_depend_on_draws_after_seeding(digits):
    """The batch order and the puzzles come from the run's seed, not from the global random
    state when the loader is built: building the model draws from that state, and DDP reseeds it
    after the model is built, so a draw there gives N ranks another order than one process."""
    from lightning.pytorch import seed_everything

    def first_batch(draws_before: int):
        seed_everything(3, verbose=False)
        torch.rand(draws_before)  # a model's initialisation between seeding and the loader
        data = RotatedMNIST(path=str(digits), target=0, batch_size=32, ordered_fraction=0.5)
        data.setup()
        return next(iter(data.train_dataloader()))

    one, ddp = first_batch(1000), first_batch(0)
    assert torch.equal(one["labels"], ddp["labels"]) and torch.equal(one["jigsaw"], ddp["jigsaw"])
    seed_everything(4, verbose=False)
    data = RotatedMNIST(path=str(digits), target=0, batch_size=32, ordered_fraction=0.5)
    data.setup()
    assert not torch.equal(next(iter(data.train_dataloader()))["labels"], one["labels"])
