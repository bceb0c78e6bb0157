"""MNIST's standard split as the benchmarks use it.

Models are fitted on training images 0-54,999 (`FIT`); training images
55,000-59,999 (`VALIDATION`) are held out to choose settings; results are
reported on the 10,000 test images (or a stated subset of them).
"""

import os
import sys

from sparselayers import datasets

# The benchmarks' default: the development layout's shared data folder.
DEFAULT_FOLDER = os.path.join("..", "shared", "data", "mnist")
FIT = slice(0, 55000)
VALIDATION = slice(55000, 60000)


def load_or_explain(folder=None):
    """Returns (train, test): (60000, 28, 28, 1) and (10000, 28, 28, 1) in [0, 1].

    Exits non-zero saying why when either split is missing.

    Args:
        folder: folder holding train-images-idx3-ubyte[.gz] and
            t10k-images-idx3-ubyte[.gz]; None looks in $SPARSELAYERS_MNIST,
            then ../shared/data/mnist, then Keras' cache.
    """
    if folder is None and not os.environ.get("SPARSELAYERS_MNIST") \
            and os.path.isdir(DEFAULT_FOLDER):
        folder = DEFAULT_FOLDER
    splits = [datasets.load_mnist(folder, split) for split in ("train", "test")]
    if any(images is None for images in splits):
        where = folder or f"$SPARSELAYERS_MNIST, {DEFAULT_FOLDER} or Keras' cache"
        sys.exit(f"MNIST (train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz]) not "
                 f"found in {where}: give the folder with --mnist DIR.")
    return splits[0], splits[1]
