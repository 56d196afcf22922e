"""JiGen's jigsaw puzzles: a 3×3 grid of tiles, P permutations far apart in Hamming distance,
and the shuffling of a batch by per-image permutation labels (0 = the whole, ordered image)."""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import numpy as np
import torch

GRID = 3


def all_permutations(tiles: int = GRID * GRID) -> np.ndarray:
    """Every permutation of ``tiles`` positions (tiles!, tiles) uint8, lexicographic order."""
    return np.array(list(itertools.permutations(range(tiles))), dtype=np.uint8)


def hamming_permutations(count: int = 30, grid: int = GRID, seed: int = 0) -> np.ndarray:
    """``count`` permutations (count, grid²) int64 of the grid's tiles, chosen greedily to
    maximise the minimum Hamming distance (Noroozi & Favaro 2016; JiGen's P = 30): each pick
    is a permutation whose distance to every earlier pick *and to the identity* (label 0, the
    ordered image) is largest, ties broken by a draw from ``seed``. The identity is never
    picked. Deterministic given (count, grid, seed)."""
    return np.array(_greedy(count, grid, seed), dtype=np.int64)


@functools.lru_cache(maxsize=4)  # a sweep's jobs share one (count, grid, seed): ~2 s each
def _greedy(count, grid, seed) -> tuple:
    if not (isinstance(count, int) and count >= 1):
        raise ValueError(f"the number of permutations must be an integer >= 1. Found {count!r}")
    tiles = grid * grid
    if tiles > 9:
        raise ValueError(f"grids up to 3×3 (9! permutations). Found {grid}×{grid}")
    perms = all_permutations(tiles)
    if count > len(perms) - 1:
        raise ValueError(f"{count} permutations asked; a {grid}×{grid} grid has {len(perms) - 1}")
    rng = np.random.default_rng(seed)
    nearest = (perms != np.arange(tiles, dtype=np.uint8)).sum(1)  # distance to the identity
    chosen = []
    for _ in range(count):
        best = np.flatnonzero(nearest == nearest.max())
        pick = int(rng.choice(best))
        chosen.append(pick)
        nearest = np.minimum(nearest, (perms != perms[pick]).sum(1))
    return tuple(map(tuple, perms[chosen].tolist()))


def min_hamming_distance(perms: np.ndarray, with_identity: bool = True) -> int:
    """The smallest Hamming distance between two rows (and the identity, when asked)."""
    rows = np.asarray(perms)
    if with_identity:
        rows = np.concatenate([np.arange(rows.shape[1])[None], rows])
    d = (rows[:, None, :] != rows[None, :, :]).sum(-1)
    return int(d[~np.eye(len(rows), dtype=bool)].min())


def permutation_table(perms: np.ndarray) -> torch.Tensor:
    """The lookup (P + 1, tiles) long of jigsaw labels: row 0 the identity, row k perms[k-1]."""
    perms = torch.as_tensor(np.asarray(perms), dtype=torch.long)
    ident = torch.arange(perms.shape[1], dtype=torch.long)[None]
    return torch.cat([ident, perms])


def shuffle_tiles(images: torch.Tensor, order: torch.Tensor, grid: int = GRID) -> torch.Tensor:
    """Images (B, C, H, W) with their grid×grid tiles rearranged: tile position k (row-major) of
    image b shows the original tile order[b, k]. H and W must be multiples of ``grid``."""
    b, c, h, w = images.shape
    if h % grid or w % grid:
        raise ValueError(f"images of {h}×{w} do not cut into a {grid}×{grid} grid")
    th, tw = h // grid, w // grid
    tiles = images.reshape(b, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(b, grid * grid, c, th, tw)
    out = tiles[torch.arange(b)[:, None], order]
    out = out.reshape(b, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(b, c, h, w)


def draw_jigsaw_labels(
    n: int, num_permutations: int, ordered_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Jigsaw labels (n,) int64: 0 (ordered, with probability ``ordered_fraction``, JiGen's
    ``bias_whole_image``) or uniform over 1..P. (JiGen's code draws 0..P first and then forces
    0 with that probability, so its ordered share is β + (1−β)/(P+1); here it is exactly β.)"""
    shuffled = rng.random(n) >= ordered_fraction
    labels = np.zeros(n, np.int64)
    labels[shuffled] = rng.integers(1, num_permutations + 1, int(shuffled.sum()))
    return labels


def save_permutations(path, perms: np.ndarray, seed: int) -> Path:
    """``permutations.json``: the permutations (label k = row k − 1; label 0 the identity),
    their seed and minimum Hamming distance, so a run's puzzles can be rebuilt exactly."""
    path = Path(path)
    perms = np.asarray(perms)
    path.write_text(
        json.dumps(
            {
                "grid": GRID,
                "seed": int(seed),
                "label_0": "the ordered image (identity)",
                "min_hamming_distance": min_hamming_distance(perms),
                "permutations": perms.tolist(),
            },
            indent=1,
        )
    )
    return path


def load_permutations(path) -> np.ndarray:
    return np.array(json.loads(Path(path).read_text())["permutations"], dtype=np.int64)
