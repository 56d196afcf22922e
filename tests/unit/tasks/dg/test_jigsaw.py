"""JiGen's puzzles: permutations far apart and seeded, tiles moved as they say, the ordered
fraction, permutations saved and read back."""

import json

import numpy as np
import pytest
import torch

from moo_lightning.tasks.dg.jigsaw import (
    draw_jigsaw_labels,
    hamming_permutations,
    load_permutations,
    min_hamming_distance,
    permutation_table,
    save_permutations,
    shuffle_tiles,
)


def test_permutations_are_distinct_far_apart_seeded_and_never_the_identity():
    p = hamming_permutations(30, seed=0)
    assert p.shape == (30, 9)
    assert all(sorted(row) == list(range(9)) for row in p.tolist())
    assert len({tuple(r) for r in p.tolist()}) == 30
    assert not (p == np.arange(9)).all(1).any()
    # greedy max-min: far from each other and from the ordered image (label 0)
    assert min_hamming_distance(p, with_identity=True) >= 7
    assert np.array_equal(hamming_permutations(30, seed=0), p)
    assert not np.array_equal(hamming_permutations(30, seed=1), p)
    # greedy: each pick is as far as any permutation could be from those before it
    few = hamming_permutations(3, seed=0)
    assert min_hamming_distance(few) == 9  # derangements of each other exist


def test_tiles_move_as_the_permutation_says_and_label_0_is_the_whole_image():
    x = torch.arange(2 * 3 * 9 * 9, dtype=torch.float32).reshape(2, 3, 9, 9)
    table = permutation_table(hamming_permutations(5))
    assert table[0].tolist() == list(range(9))
    y = shuffle_tiles(x, table[torch.tensor([0, 3])])
    assert torch.equal(y[0], x[0])
    order = table[3]
    for k in range(9):  # tile position k shows original tile order[k]
        r, c = divmod(k, 3)
        sr, sc = divmod(int(order[k]), 3)
        assert torch.equal(y[1, :, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3],
                           x[1, :, 3 * sr : 3 * sr + 3, 3 * sc : 3 * sc + 3])  # fmt: skip
    assert torch.equal(shuffle_tiles(y, torch.argsort(table[[0, 3]], 1)), x)
    with pytest.raises(ValueError, match="3×3 grid"):
        shuffle_tiles(torch.zeros(1, 1, 10, 10), table[:1])


def test_the_ordered_fraction_and_uniform_permutations():
    labels = draw_jigsaw_labels(60_000, 30, 0.9, np.random.default_rng(0))
    assert abs((labels == 0).mean() - 0.9) < 0.005
    counts = np.bincount(labels[labels > 0], minlength=31)[1:]
    assert counts.min() > 0.8 * counts.mean() and labels.max() == 30
    assert (draw_jigsaw_labels(100, 30, 1.0, np.random.default_rng(0)) == 0).all()


def test_permutations_are_saved_and_read_back(tmp_path):
    p = hamming_permutations(30, seed=3)
    save_permutations(tmp_path / "permutations.json", p, seed=3)
    assert np.array_equal(load_permutations(tmp_path / "permutations.json"), p)
    saved = json.loads((tmp_path / "permutations.json").read_text())
    assert saved["seed"] == 3 and saved["min_hamming_distance"] >= 7
