"""k-NN on data with an offset: wrong neighbours and time, before and after issue 11.

`imputers.knn_fill` once computed |x|^2 - 2 x.r + |r|^2 in float32, which
cancels catastrophically when images share a large offset. It now centres the
data on the reference mean and works in float64. This benchmark runs both side
by side on the same queries, against exact float64 neighbours (the direct
sum of squared differences, in NumPy):

- MNIST's standard split (references: training images 0-7,999; queries: the
  first test images; 50% of the pixels missing) at their [0, 1] scale and rescaled to MRI-like intensities
  (500 + 3500 x);
- 28 x 28 patches of real T1 brain MRI in their native intensities (the
  2 mm cohort: references from the first subjects, queries from the last).

Run: python benchmarks/knn_precision.py [--mnist DIR] [--mri DIR]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import imputers  # noqa: E402
from mnist_split import load_or_explain  # noqa: E402


def float32_expansion_knn(x, observed, reference, k):
    """The former knn_fill (the baseline): the float32 matrix-product distance."""
    x = tf.where(observed, x, 0.0)
    flat_x = tf.reshape(x, [len(x), -1])
    weights = tf.cast(tf.reshape(observed, flat_x.shape), tf.float32)
    flat_reference = tf.reshape(reference, [len(reference), -1])
    distances = (tf.reduce_sum(weights * tf.square(flat_x), axis=1, keepdims=True)
                 - 2.0 * tf.matmul(weights * flat_x, flat_reference, transpose_b=True)
                 + tf.matmul(weights, tf.square(flat_reference), transpose_b=True))
    _, nearest = tf.math.top_k(-distances, k=k)
    return nearest.numpy()


def exact_neighbours(x, observed, reference, k):
    flat_x = x.reshape(len(x), -1).astype(np.float64)
    seen = observed.reshape(len(x), -1)
    flat_reference = reference.reshape(len(reference), -1).astype(np.float64)
    out = []
    for query, query_seen in zip(flat_x, seen):
        distances = ((flat_reference[:, query_seen] - query[query_seen]) ** 2).sum(axis=1)
        out.append(np.argsort(distances, kind="stable")[:k])
    return np.asarray(out)


def wrong_fills(filled, x, observed, reference, truth_neighbours):
    """Queries whose filling differs from the exact neighbours' mean (beyond 1e-5 relative)."""
    want = reference.reshape(len(reference), -1)[truth_neighbours].astype(np.float64).mean(axis=1)
    want = np.where(observed.reshape(len(x), -1), x.reshape(len(x), -1), want)
    got = filled.reshape(len(x), -1)
    scale = np.abs(want).max()
    return int(np.sum(np.any(np.abs(got - want) > 1e-5 * scale, axis=1)))


def compare(name, x, observed, reference, k=5):
    truth = exact_neighbours(x, observed, reference, k)
    x_t, observed_t, reference_t = tf.constant(x), tf.constant(observed), tf.constant(reference)
    float32_expansion_knn(x_t[:2], observed_t[:2], reference_t, k)  # warm up both
    imputers.knn_fill(x_t[:2], observed_t[:2], reference_t, k)
    start = time.perf_counter()
    old_nearest = float32_expansion_knn(x_t, observed_t, reference_t, k)
    old_seconds = time.perf_counter() - start
    start = time.perf_counter()
    filled = imputers.knn_fill(x_t, observed_t, reference_t, k).numpy()
    new_seconds = time.perf_counter() - start
    old_filled = reference.reshape(len(reference), -1)[old_nearest].astype(np.float64).mean(axis=1)
    old_filled = np.where(observed.reshape(len(x), -1), x.reshape(len(x), -1), old_filled)
    print(f"{name:34s} {len(x):6d} x {len(reference):6d}  "
          f"wrong: float32 expansion {wrong_fills(old_filled, x, observed, reference, truth):4d}"
          f"  knn_fill {wrong_fills(filled, x, observed, reference, truth):4d}   "
          f"time {old_seconds:6.2f} s vs {new_seconds:6.2f} s (x{new_seconds / old_seconds:.2f})")


def mri_patches(folder, subjects, count, rng):
    import nibabel

    files = sorted(f for f in os.listdir(folder) if f.endswith((".nii", ".nii.gz")))
    patches = []
    for name in [files[i] for i in subjects]:
        volume = np.asarray(nibabel.load(os.path.join(folder, name)).dataobj, np.float32)
        for _ in range(count // len(subjects)):
            while True:
                z = rng.integers(volume.shape[2])
                i, j = rng.integers(0, volume.shape[0] - 28), rng.integers(0, volume.shape[1] - 28)
                patch = volume[i:i + 28, j:j + 28, z]
                if np.mean(patch > 0.1 * volume.max()) > 0.9:  # inside the head
                    patches.append(patch)
                    break
    return np.asarray(patches)[..., None]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=None, help="folder of MNIST's train- and t10k-images-idx3-ubyte.gz")
    parser.add_argument("--mri", default="../shared/data/mri/cohort_2mm",
                        help="folder of T1 volumes (NIfTI)")
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train_images, test_images = load_or_explain(args.mnist)
    reference, queries = train_images[:8000], test_images[:args.queries]
    observed = rng.random(queries.shape) > 0.5
    started = time.perf_counter()
    compare("MNIST [0, 1]", queries, observed, reference)
    compare("MNIST as 500 + 3500 x", 500 + 3500 * queries, observed, 500 + 3500 * reference)
    compare("MNIST as 1000 + x", 1000 + queries, observed, 1000 + reference)
    if os.path.isdir(args.mri):
        files = [f for f in os.listdir(args.mri) if f.endswith((".nii", ".nii.gz"))]
        mri_reference = mri_patches(args.mri, list(range(len(files) - 3)), 4000, rng)
        mri_queries = mri_patches(args.mri, list(range(len(files) - 3, len(files))),
                                  args.queries, rng)
        mri_observed = rng.random(mri_queries.shape) > 0.5
        compare("T1 MRI patches, native intensity", mri_queries, mri_observed, mri_reference)
    else:
        print(f"No MRI folder {args.mri}: MRI row left out.")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
