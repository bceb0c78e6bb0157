import gzip

import numpy as np
import pytest

from sparselayers import datasets


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_round_trip_and_load_images(tmp_path, rng):
    images = rng.integers(0, 256, size=(5, 28, 28))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    np.testing.assert_array_equal(datasets.load_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    loaded = datasets.load_images(str(tmp_path / "t10k-images-idx3-ubyte.gz"))
    assert loaded.shape == (5, 28, 28, 1) and loaded.dtype == np.float32
    np.testing.assert_allclose(loaded[..., 0], images / 255.0)
    assert datasets.find_mnist_test(str(tmp_path)).endswith("t10k-images-idx3-ubyte.gz")
    assert datasets.load_mnist_test(str(tmp_path)).shape == (5, 28, 28, 1)


def test_find_mnist_test_looks_only_in_a_given_folder(tmp_path, rng, monkeypatch):
    found = tmp_path / "found"
    found.mkdir()
    _write_idx(found / "t10k-images-idx3-ubyte", rng.integers(0, 256, size=(2, 28, 28)))
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(tmp_path)  # no ../shared/data/mnist from here
    monkeypatch.setenv("SPARSELAYERS_MNIST", str(found))
    assert datasets.find_mnist_test() == str(found / "t10k-images-idx3-ubyte")
    assert datasets.find_mnist_test(str(empty)) is None
    assert datasets.load_mnist_test(str(empty)) is None


def test_npz_and_errors(tmp_path, rng):
    images = rng.random((3, 8, 8)).astype("float32")
    np.savez(tmp_path / "data.npz", x=images)
    np.testing.assert_allclose(datasets.load_images(str(tmp_path / "data.npz"))[..., 0], images)
    np.savez(tmp_path / "other.npz", y=images)
    with pytest.raises(ValueError, match="expected 'images' or 'x'"):
        datasets.load_images(str(tmp_path / "other.npz"))
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.load_idx(tmp_path / "bad.idx")
