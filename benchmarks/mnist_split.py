"""The MNIST test set as the benchmarks use it (images 0-7999 train, 8000-9999 test)."""

import os
import sys

from sparselayers import datasets

# The benchmarks' default: the development layout's shared data folder.
DEFAULT_FOLDER = os.path.join("..", "shared", "data", "mnist")


def load_or_explain(folder=None):
    """Returns the (10000, 28, 28, 1) images in [0, 1], or exits non-zero saying why.

    Args:
        folder: folder holding t10k-images-idx3-ubyte[.gz]; None looks in
            $SPARSELAYERS_MNIST, then ../shared/data/mnist, then Keras' cache.
    """
    if folder is None and not os.environ.get("SPARSELAYERS_MNIST") \
            and os.path.isdir(DEFAULT_FOLDER):
        folder = DEFAULT_FOLDER
    images = datasets.load_mnist_test(folder)
    if images is None:
        where = folder or f"$SPARSELAYERS_MNIST, {DEFAULT_FOLDER} or Keras' cache"
        sys.exit(f"MNIST (t10k-images-idx3-ubyte[.gz]) not found in {where}: give the folder "
                 "with --mnist DIR.")
    return images
