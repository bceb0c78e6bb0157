"""How Table 1's "ours (k-NN init)" grows with the auto-encoder's training set.

The Table 1 recipe (`table1_vector_field_mnist.py`) is trained on the first N
of MNIST's training images 0-54,999 for each N in --sizes, always for the
same number of gradient steps (that of --passes over 55,000 images), and
scored on the held-out training images 55,000-55,499 with their own random
13x13 patches: ours from k-NN initialisation (references: images 0-54,999 for
every N, so that only the auto-encoder's data changes), with the step size
and steps that score best, as in Table 1. k-NN alone is scored with the first
N images as references.

    python benchmarks/table1_data_scaling.py [--sizes 6875 13750 27500 55000]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

import numpy as np  # noqa: E402

import imputers  # noqa: E402
from sparselayers import masks  # noqa: E402
import mnist_split  # noqa: E402  (benchmarks/mnist_split.py)
from progress import stage  # noqa: E402  (benchmarks/progress.py)
from table1_vector_field_mnist import (  # noqa: E402
    STEP_SIZES, choose_stopping_rule, train_autoencoder)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", help="folder with MNIST's train- and t10k-images-idx3-ubyte.gz")
    parser.add_argument("--sizes", type=int, nargs="+", default=(6875, 13750, 27500, 55000))
    parser.add_argument("--passes", type=int, default=12,
                        help="passes over 55,000 images; smaller sets get proportionally more")
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--validation-images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fit_size = mnist_split.FIT.stop - mnist_split.FIT.start
    whole_epochs = (fit_size * args.passes % (size * args.draws) == 0 for size in args.sizes)
    if not all(0 < size <= fit_size for size in args.sizes) or not all(whole_epochs):
        parser.error(f"each of --sizes {args.sizes} must be in 1..{fit_size} and give a whole "
                     f"number of epochs: {fit_size} * --passes ({args.passes}) / (size * --draws "
                     f"({args.draws})).")
    train_images, _ = mnist_split.load_or_explain(args.mnist)
    train = train_images[mnist_split.FIT]
    validation = train_images[mnist_split.VALIDATION][:args.validation_images]
    validation_mask = masks.missing_patch(validation.shape[:-1], 13, seed=args.seed + 5)[..., None]
    validation_sparse = np.where(validation_mask > 0, validation, np.nan).astype("float32")

    rows = []
    for size in args.sizes:
        started = time.time()
        epochs = fit_size * args.passes // (size * args.draws)
        model = train_autoencoder(train[:size], args.draws, epochs, args.seed,
                                  knn_distance="plain")  # as its recorded figures
        (step_size, steps), ours = choose_stopping_rule(
            model, validation, validation_mask, train, "knn", STEP_SIZES, args.seed,
            knn_distance="plain")
        knn = imputers.knn_fill(validation_sparse, validation_mask, train[:size], k=5).numpy()
        rows.append((size, epochs, ours, step_size, steps,
                     float(np.mean(imputers.metrics.ssim(knn, validation)))))
        stage(f"{size} images: trained and scored in {time.time() - started:.0f} s")

    print(f"\nValidation SSIM (training images 55,000-{54999 + len(validation)}, 13x13 patch) by "
          "training-set size")
    print(f"{'images':>7} {'epochs':>7} {'ours (k-NN init)':>17} {'(h, steps)':>11} "
          f"{'k-NN alone':>11}")
    for size, epochs, ours, step_size, steps, knn in rows:
        print(f"{size:>7} {epochs:>7} {ours:>17.4f} {f'({step_size}, {steps})':>11} {knn:>11.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
