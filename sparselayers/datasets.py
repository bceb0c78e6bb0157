"""Reading image arrays from local files (no network access).

Benchmarks and examples use MNIST (its training and test sets) when it is
present locally (IDX files, gzipped or not, or Keras' dataset cache); the library reads only
the paths and environment variables its user gives, and downloads nothing.
"""

import gzip
import os

import numpy as np

__all__ = ["load_mnist", "load_images", "load_idx", "find_mnist"]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_idx(path):
    """Reads an IDX file (the MNIST format), optionally gzipped.

    Args:
        path: file path; a name ending in ``.gz`` is decompressed.

    Returns:
        NumPy array with the file's shape and dtype.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r}).")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    values = np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * rank)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header shape {shape} does not match {values.size} values.")
    return values.reshape(shape)


def load_images(path):
    """Images in [0, 1] as float32 (n, H, W, C) from an .npz, .npy or IDX file.

    An .npz must hold an array named ``images`` or ``x``. Integer data and
    float data above 1 are divided by 255.
    """
    path = str(path)
    if path.endswith(".npz"):
        with np.load(path) as archive:
            key = "images" if "images" in archive else "x" if "x" in archive else None
            if key is None:
                raise ValueError(f"{path} holds {list(archive)}; expected 'images' or 'x'.")
            images = archive[key]
    elif path.endswith(".npy"):
        images = np.load(path)
    else:
        images = load_idx(path)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"{path}: expected images (n, H, W[, C]); found shape {images.shape}.")
    return images / 255.0 if images.max() > 1.0 else images


_MNIST_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


def _check_split(split):
    if split not in _MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")


def find_mnist(directory=None, split="test"):
    """Path of the local MNIST images of one split, or None when absent.

    The library looks only where the user says: in `directory` when it is
    given (a wrong folder is not replaced by another one); otherwise in the
    folder named by ``$SPARSELAYERS_MNIST``, then in Keras' own dataset cache
    (``$KERAS_HOME/datasets/mnist.npz``, by default under ``~/.keras``), which
    exists if `keras.datasets.mnist.load_data()` ever ran on this machine.
    Nothing is downloaded.

    Args:
        directory: folder holding ``train-images-idx3-ubyte[.gz]`` and/or
            ``t10k-images-idx3-ubyte[.gz]``; None searches as above.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).

    Returns:
        The IDX file's path, the cached ``mnist.npz``'s path, or None.
    """
    _check_split(split)
    folder = directory or os.environ.get("SPARSELAYERS_MNIST")
    if folder:
        for name in (_MNIST_FILES[split] + ".gz", _MNIST_FILES[split]):
            path = os.path.join(folder, name)
            if os.path.exists(path):
                return path
    if not directory:
        keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
        cached = os.path.join(keras_home, "datasets", "mnist.npz")
        if os.path.exists(cached):
            return cached
    return None


def load_mnist(directory=None, split="test"):
    """Local MNIST images of one split as float32 (n, 28, 28, 1) in [0, 1], or None.

    Searched as in `find_mnist` (an IDX file, or the ``x_train`` / ``x_test``
    array of Keras' cached ``mnist.npz``).

    Example:
        >>> train = load_mnist("data/mnist", split="train")  # (60000, 28, 28, 1)
    """
    path = find_mnist(directory, split)
    if path is None:
        return None
    if path.endswith(".npz"):
        with np.load(path) as archive:
            images = archive["x_train" if split == "train" else "x_test"].astype(np.float32)
        return images[..., None] / 255.0
    return load_images(path)
