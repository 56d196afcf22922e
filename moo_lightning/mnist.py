"""MNIST's IDX files (LeCun et al.): reading and writing the unsigned-byte arrays, finding a
split's files in a folder (plain or .gz, also in torchvision's MNIST/raw/ layout), reading a split
as images and labels. Shared by every task built from MNIST digits; each one passes its own hint
on where the files are."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

DIGIT = 28  # MNIST digits are 28 × 28
UBYTE = 0x08  # IDX type code of unsigned bytes, the only type MNIST uses
IMAGES_MAGIC = (UBYTE << 8) | 3  # 2051
LABELS_MAGIC = (UBYTE << 8) | 1  # 2049


def file_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when its name ends in .gz; one line naming the file when it is
    missing, unreadable or a broken gzip."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as err:
        raise OSError(f"{path}: cannot read ({err.strerror or err})") from None
    if not path.name.endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: not a complete gzip file ({err})") from None


def read_idx(path, ndim: int, kind: str = "data") -> np.ndarray:
    """An IDX file (plain or .gz) of unsigned bytes with ``ndim`` dimensions, as a uint8 array of
    the shape its header declares; any other magic number or a size that disagrees with the
    header is refused naming the file."""
    path = Path(path)
    data = file_bytes(path)
    expected = (UBYTE << 8) | ndim
    want = f"expected IDX {kind} (magic number {expected}: unsigned bytes, {ndim}-dimensional)"
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes, too short for an IDX header; {want}")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected:
        raise ValueError(f"{path}: magic number {magic} (0x{magic:08x}); {want}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: truncated header ({len(data)} bytes where {ndim} dimensions need "
            f"{header}); {want}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    size, body = math.prod(dims), len(data) - header
    if body != size:
        what = "truncated" if body < size else "longer than declared"
        raise ValueError(
            f"{path}: {what}: the header declares shape {dims}, {size:,} bytes of data; "
            f"the file holds {body:,}"
        )
    return np.frombuffer(data, np.uint8, count=size, offset=header).reshape(dims).copy()


def write_idx(path, array) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed when the name ends in .gz)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or array.ndim < 1:
        raise ValueError(f"write_idx: a uint8 array of >= 1 dimension. Found {array.dtype}")
    head = bytes([0, 0, UBYTE, array.ndim])
    head += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = head + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def read_images(path) -> np.ndarray:
    """MNIST images (n, 28, 28) uint8 from an ``*-images-idx3-ubyte[.gz]`` file."""
    images = read_idx(path, 3, "images")
    if images.shape[1:] != (DIGIT, DIGIT):
        raise ValueError(
            f"{path}: images of {images.shape[1]}×{images.shape[2]} pixels; expected "
            f"{DIGIT}×{DIGIT} MNIST digits"
        )
    return images


def read_labels(path) -> np.ndarray:
    """MNIST labels (n,) uint8 in 0..9 from an ``*-labels-idx1-ubyte[.gz]`` file."""
    labels = read_idx(path, 1, "labels")
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise ValueError(
            f"{path}: label {labels[bad[0]]} at index {bad[0]} ({bad.size} such); "
            f"expected digit labels 0..9"
        )
    return labels


def find_idx(folder, split: str, kind: str, hint: str = "") -> Path:
    """The ``{split}-{kind}-idx?-ubyte`` file in ``folder`` (or folder/MNIST/raw), plain
    preferred over .gz (torchvision keeps both); ``hint`` ends the message when it is missing."""
    folder = Path(folder)
    suffix = "idx3-ubyte" if kind == "images" else "idx1-ubyte"
    names = (f"{split}-{kind}-{suffix}", f"{split}-{kind}.{suffix}")  # both spellings circulate
    for where in (folder, folder / "MNIST" / "raw"):
        for name in names:
            for candidate in (where / name, where / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
    raise FileNotFoundError(
        f"{folder}: no {names[0]}[.gz] (looked there and in MNIST/raw/). {hint}".rstrip()
    )


def read_mnist(folder, split: str, hint: str = "") -> tuple[np.ndarray, np.ndarray]:
    """One MNIST split ('t10k' or 'train') from a folder: images (n, 28, 28) uint8 and labels
    (n,) uint8, one label per image."""
    image_path = find_idx(folder, split, "images", hint)
    label_path = find_idx(folder, split, "labels", hint)
    images, labels = read_images(image_path), read_labels(label_path)
    if len(images) != len(labels):
        raise ValueError(
            f"{image_path} holds {len(images):,} images but {label_path} holds "
            f"{len(labels):,} labels; expected one label per image"
        )
    return images, labels
