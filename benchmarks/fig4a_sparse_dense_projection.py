"""Paper Fig. 4(a): projecting sparse images onto a PCA subspace.

Protocol (paper §4.2, on MNIST's standard split): a PCA subspace of size 10
fitted on the fully observed training images 0-54,999 gives the ground-truth
projection ``r* = W^T (y - mu)`` of each test image (the first
--test-images of the 10,000). The images are then
subsampled at random (50/75/90/95/98% missing) and projected by

* an ordinary Dense layer (kernel W, bias -W^T mu) after filling the missing
  pixels with zeros, with the pixel-wise mean, or by linear interpolation:
  along each row (1-D, constant beyond the ends: the interpolation the paper's
  conv-interp variant uses), and, as a stronger extra baseline, in 2-D over a
  Delaunay triangulation (scipy griddata, nearest outside the convex hull);
* SparseDense with kernel W and bias mu (eq. 10); lambda is chosen per level
  from a small grid on 1000 held-out training images (55,000-55,999).

Prints the projection MSE against r* for each method and level.

    python benchmarks/fig4a_sparse_dense_projection.py [--mnist DIR] [--test-images 2000]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

import keras  # noqa: E402
import numpy as np  # noqa: E402
from scipy.interpolate import griddata  # noqa: E402

from sparselayers import SparseDense  # noqa: E402
from sparselayers import masks  # noqa: E402
import mnist_split  # noqa: E402  (benchmarks/mnist_split.py)

LEVELS = (0.5, 0.75, 0.9, 0.95, 0.98)
LAMBDAS = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def interpolate_rows(image, mask):
    """1-D linear interpolation of the missing pixels along each row."""
    filled = np.zeros_like(image)
    for row, (values, observed) in enumerate(zip(image, mask > 0)):
        if observed.any():
            positions = np.flatnonzero(observed)
            filled[row] = np.interp(np.arange(len(values)), positions, values[positions])
    return np.where(mask > 0, image, filled)


def interpolate_2d(image, mask):
    """2-D linear interpolation of the missing pixels of one image."""
    points = np.argwhere(mask > 0)
    values = image[mask > 0]
    grid = np.argwhere(np.ones_like(mask))
    linear = griddata(points, values, grid, method="linear")
    nearest = griddata(points, values, grid, method="nearest")
    filled = np.where(np.isnan(linear), nearest, linear).reshape(image.shape)
    return np.where(mask > 0, image, filled)


def dense_projection(filled, kernel, mu):
    dense = keras.layers.Dense(kernel.shape[1])
    dense.build((None, kernel.shape[0]))
    dense.set_weights([kernel, -(mu @ kernel)])
    return dense(filled.reshape(len(filled), -1)).numpy()


def sparse_projection(images, mask, kernel, mu, regularization):
    layer = SparseDense(kernel.shape[1], regularization=regularization)
    layer.build([(None, 28, 28), (None, 28, 28)])
    layer.set_weights([kernel, mu, np.float32(regularization)])
    return np.concatenate([
        layer([images[i:i + 500], mask[i:i + 500]]).numpy() for i in range(0, len(images), 500)
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", help="folder with MNIST's train- and t10k-images-idx3-ubyte.gz")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train_images, test_images = mnist_split.load_or_explain(args.mnist)
    train = train_images[mnist_split.FIT, ..., 0]  # (55000, 28, 28)
    validation = train_images[mnist_split.VALIDATION, ..., 0][:1000]
    test = test_images[:args.test_images, ..., 0]
    flat_train = train.reshape(len(train), -1)
    mu = flat_train.mean(axis=0)
    _, _, components = np.linalg.svd(flat_train - mu, full_matrices=False)
    kernel = components[:10].T.astype("float32")  # (784, 10), orthonormal columns
    mu = mu.astype("float32")
    truth = (test.reshape(len(test), -1) - mu) @ kernel

    print(f"projection MSE vs the fully observed PCA projection ({len(test)} test images)")
    header = (f"{'missing':>8} {'zero fill':>10} {'mean fill':>10} {'interp 1-D':>10} "
              f"{'interp 2-D':>10} {'SparseDense':>12} {'lambda':>7}")
    print(header)
    rows = []
    start = time.time()
    for level in LEVELS:
        mask = masks.random_missing(test.shape, level, seed=args.seed)
        tune_images = validation
        tune_mask = masks.random_missing(tune_images.shape, level, seed=args.seed + 1)
        tune_truth = (tune_images.reshape(1000, -1) - mu) @ kernel
        tune_errors = [
            np.mean((sparse_projection(tune_images, tune_mask, kernel, mu, lam) - tune_truth) ** 2)
            for lam in LAMBDAS
        ]
        lam = LAMBDAS[int(np.argmin(tune_errors))]
        zero = dense_projection(np.where(mask > 0, test, 0.0), kernel, mu)
        mean = dense_projection(np.where(mask > 0, test, mu.reshape(28, 28)), kernel, mu)
        rows_fill = dense_projection(
            np.stack([interpolate_rows(image, m) for image, m in zip(test, mask)]), kernel, mu
        )
        delaunay = dense_projection(
            np.stack([interpolate_2d(image, m) for image, m in zip(test, mask)]), kernel, mu
        )
        sparse = sparse_projection(np.where(mask > 0, test, np.nan), mask, kernel, mu, lam)
        errors = [np.mean((p - truth) ** 2) for p in (zero, mean, rows_fill, delaunay, sparse)]
        rows.append(errors)
        print(f"{100 * level:>7.0f}% " + " ".join(f"{e:>10.4f}" for e in errors[:4])
              + f" {errors[4]:>12.4f} {lam:>7.0e}")
    wins = all(row[4] < min(row[:3]) for row in rows)
    wins_2d = [f"{100 * level:.0f}%" for level, row in zip(LEVELS, rows) if row[4] < row[3]]
    print(f"SparseDense below zero, mean and 1-D interpolation fills at every level: {wins}")
    print(f"SparseDense below 2-D interpolation at: {', '.join(wins_2d) or 'none'}")
    print(f"({time.time() - start:.0f} s)")
    return 0 if wins else 1


if __name__ == "__main__":
    sys.exit(main())
