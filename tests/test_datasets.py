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
    assert datasets.find_mnist(str(tmp_path)).endswith("t10k-images-idx3-ubyte.gz")
    assert datasets.load_mnist(str(tmp_path)).shape == (5, 28, 28, 1)


def test_find_mnist_looks_only_in_a_given_folder(tmp_path, rng, monkeypatch):
    found = tmp_path / "found"
    found.mkdir()
    _write_idx(found / "t10k-images-idx3-ubyte", rng.integers(0, 256, size=(2, 28, 28)))
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(tmp_path)  # no ../shared/data/mnist from here
    monkeypatch.setenv("SPARSELAYERS_MNIST", str(found))
    assert datasets.find_mnist() == str(found / "t10k-images-idx3-ubyte")
    assert datasets.find_mnist(str(empty)) is None
    assert datasets.load_mnist(str(empty)) is None


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


def test_the_library_reads_only_what_the_user_names(tmp_path, rng, monkeypatch):
    """No development-layout path: ../shared/data/mnist is never searched; the
    user's folder, $SPARSELAYERS_MNIST and Keras' own cache are."""
    shared = tmp_path / "shared" / "data" / "mnist"
    shared.mkdir(parents=True)
    _write_idx(shared / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, size=(2, 28, 28)))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("SPARSELAYERS_MNIST", raising=False)
    keras_home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    assert datasets.find_mnist() is None
    (keras_home / "datasets").mkdir(parents=True)
    x_test = rng.integers(0, 256, size=(3, 28, 28)).astype(np.uint8)
    np.savez(keras_home / "datasets" / "mnist.npz", x_train=x_test, y_train=np.zeros(3),
             x_test=x_test, y_test=np.zeros(3))
    images = datasets.load_mnist()
    assert images.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(images[..., 0], x_test / 255.0, rtol=1e-6)


def test_train_and_test_splits_are_told_apart(tmp_path, rng, monkeypatch):
    train = rng.integers(0, 256, size=(4, 28, 28))
    test = rng.integers(0, 256, size=(2, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    np.testing.assert_allclose(datasets.load_mnist(str(tmp_path), "train")[..., 0], train / 255.0)
    np.testing.assert_allclose(datasets.load_mnist(str(tmp_path), "test")[..., 0], test / 255.0)
    with pytest.raises(ValueError, match="'train' or 'test'; got 'validation'"):
        datasets.find_mnist(str(tmp_path), "validation")
    keras_home = tmp_path / "keras_home"
    (keras_home / "datasets").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv("SPARSELAYERS_MNIST", raising=False)
    np.savez(keras_home / "datasets" / "mnist.npz", x_train=train.astype(np.uint8),
             y_train=np.zeros(4), x_test=test.astype(np.uint8), y_test=np.zeros(2))
    assert datasets.load_mnist(split="train").shape == (4, 28, 28, 1)
    assert datasets.load_mnist(split="test").shape == (2, 28, 28, 1)
