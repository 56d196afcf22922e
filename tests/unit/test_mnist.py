"""MNIST's IDX files: the format round trip (plain and gzip), bad files refused naming the file,
counts that disagree and missing splits."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from moo_lightning.mnist import read_idx, read_images, read_labels, read_mnist, write_idx
from moo_lightning.tasks.multi_mnist.data import MultiMNIST
from tests.helpers import random_digits, write_mnist_split


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    images, labels = write_mnist_split(tmp_path, n=7, gz=gz)
    got_images, got_labels = read_mnist(tmp_path, "t10k")
    assert got_images.dtype == np.uint8 and np.array_equal(got_images, images)
    assert np.array_equal(got_labels, labels)
    # the format itself: magic 0x00000803, then big-endian dimensions, then the bytes
    raw = (tmp_path / f"t10k-images-idx3-ubyte{'.gz' if gz else ''}").read_bytes()
    raw = gzip.decompress(raw) if gz else raw
    assert raw[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 7, 0, 0, 0, 28, 0, 0, 0, 28])
    assert raw[16:] == images.tobytes()


def _bad(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _header(ndim_magic: int, *dims: int) -> bytes:
    return bytes([0, 0, 8, ndim_magic]) + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize(
    ("reader", "data", "message"),
    [
        (read_images, _header(1, 3) + bytes(3), "magic number 2049.*expected IDX images"),
        (read_labels, _header(3, 1, 28, 28) + bytes(784), "magic number 2051.*expected IDX labels"),
        (read_images, b"\x00\x00\x08", "3 bytes, too short for an IDX header"),
        (read_images, _header(3, 2, 28), "truncated header"),
        (read_images, _header(3, 2, 28, 28) + bytes(1000), r"truncated.*\(2, 28, 28\), 1,568"),
        (read_labels, _header(1, 3) + bytes(5), "longer than declared.*holds 5"),
        (read_images, _header(3, 1, 20, 20) + bytes(400), "20×20 pixels; expected 28×28"),
        (read_labels, _header(1, 3) + bytes([1, 12, 3]), "label 12 at index 1.*0..9"),
    ],
)
def test_bad_idx_files_are_refused_naming_the_file(tmp_path, reader, data, message):
    path = _bad(tmp_path / "some-file-idx-ubyte", data)
    with pytest.raises(ValueError, match=message) as err:
        reader(path)
    assert str(path) in str(err.value)


def test_bad_gzip_count_mismatch_and_missing_files(tmp_path):
    good = gzip.compress(_header(1, 100) + bytes(100))
    path = _bad(tmp_path / "t10k-labels-idx1-ubyte.gz", good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a complete gzip file") as err:
        read_idx(path, 1)
    assert str(path) in str(err.value)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", random_digits(5)[0])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="holds 5 images but .* holds 4 labels"):
        read_mnist(tmp_path, "t10k")
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        read_mnist(tmp_path, "train")
    with pytest.raises(ValueError, match="data.path must be a folder"):
        MultiMNIST(None)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        MultiMNIST(str(tmp_path / "nowhere")).setup()
