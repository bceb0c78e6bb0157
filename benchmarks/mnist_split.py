"""The MNIST test set as the benchmarks use it (images 0-7999 train, 8000-9999 test)."""

from sparselayers import datasets


def load_or_explain(folder=None):
    """Returns the (10000, 28, 28, 1) images in [0, 1], or None after saying why.

    Args:
        folder: folder holding t10k-images-idx3-ubyte.gz; None looks in
            ../shared/data/mnist.
    """
    images = datasets.load_mnist_test(folder)
    if images is None:
        where = folder or "$SPARSELAYERS_MNIST or ../shared/data/mnist"
        print(f"MNIST (t10k-images-idx3-ubyte[.gz]) not found in {where}: benchmark skipped.")
    return images
