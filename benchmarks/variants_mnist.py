"""Paper §4.3 / Fig. 5 on MNIST: missing-pixel MSE of every model variant.

Protocol: MNIST test set, images 0-7999 for training (sparse only: the models
never see a complete image), 8000-9999 for testing; random missing pixels at
75% and 90%. Every variant gets the same budget (--epochs, batch 64, Adam 1e-3,
latent size 10, noise sigma --noise-sigma) and imputes the test split by
conditional mean (eq. 8, 10 samples). Mean fill is the pixel-wise mean of the
observed training pixels. Also: time per image of `impute` vs fitting a Deep
Image Prior (`imputers.fit_dip`, the conv-sparse decoder's architecture) to one
test image, as in §4.5 (the paper: 18.6 ms vs 36.5 s for MRI slices).

    python benchmarks/variants_mnist.py [--epochs 10] [--train-images 8000]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import imputers  # noqa: E402
import sparselayers  # noqa: E402
from sparselayers import masks  # noqa: E402
import mnist_split  # noqa: E402  (benchmarks/mnist_split.py)

METHODS = ("linear", "conv-zero", "conv-mean", "conv-interp", "conv-interp-wmask",
           "conv-sparse", "conv-FC-sparse")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", help="folder with t10k-images-idx3-ubyte.gz")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-images", type=int, default=8000)
    parser.add_argument("--missing", type=float, nargs="+", default=[0.75, 0.9])
    parser.add_argument("--noise-sigma", type=float, default=0.2)
    parser.add_argument("--dip-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    images = mnist_split.load_or_explain(args.mnist)
    train_images, test_images = images[:args.train_images], images[8000:]
    table = {}
    timing = None
    for missing in args.missing:
        train_mask = masks.random_missing(train_images.shape[:-1], missing, seed=args.seed)[..., None]
        test_mask = masks.random_missing(test_images.shape[:-1], missing, seed=args.seed + 1)[..., None]
        train = np.where(train_mask > 0, train_images, np.nan).astype("float32")
        test = np.where(test_mask > 0, test_images, np.nan).astype("float32")
        counts = train_mask.sum(axis=0)
        pixel_mean = np.nansum(train, axis=0) / np.maximum(counts, 1)
        missing_entries = test_mask == 0

        def score(imputed):
            return float(np.mean((imputed - test_images)[missing_entries] ** 2))

        table[(missing, "mean fill")] = score(np.where(test_mask > 0, test_images, pixel_mean))
        for name in METHODS:
            keras.utils.set_random_seed(args.seed)
            started = time.time()
            model = sparselayers.build_variant(name, (28, 28, 1), 10, filters=16, levels=2,
                                               noise_sigma=args.noise_sigma, pixel_mean=pixel_mean)
            model.compile(keras.optimizers.Adam(1e-3))
            model.fit((train, train_mask), batch_size=64, epochs=args.epochs, verbose=0)
            imputed = model.impute(test, test_mask, num_samples=10, seed=args.seed)
            table[(missing, name)] = score(imputed)
            print(f"{100 * missing:.0f}% {name:<18} MSE {table[(missing, name)]:.4f} "
                  f"({time.time() - started:.0f} s)", flush=True)
            if name == "conv-sparse" and timing is None:
                model.impute(test[:256], test_mask[:256])  # warm-up
                started = time.perf_counter()
                model.impute(test, test_mask, num_samples=10)
                impute_per_image = (time.perf_counter() - started) / len(test)
                started = time.perf_counter()
                imputers.fit_dip(model.decoder, test[:1], test_mask[:1], steps=args.dip_steps,
                                 seed=args.seed, verbose=0)
                timing = (impute_per_image, time.perf_counter() - started)

    print(f"\nmissing-pixel MSE on the {len(test_images)} test images "
          f"(train {len(train_images)}, {args.epochs} epochs each):")
    print(f"{'method':<18}" + "".join(f"{100 * m:>9.0f}%" for m in args.missing))
    for name in ("mean fill",) + METHODS:
        print(f"{name:<18}" + "".join(f"{table[(m, name)]:>10.4f}" for m in args.missing))
    for missing in args.missing:
        linear, mean = table[(missing, "linear")], table[(missing, "mean fill")]
        nonlinear = [table[(missing, name)] for name in METHODS[1:]]
        print(f"{100 * missing:.0f}%: every non-linear variant below linear: "
              f"{all(v < linear for v in nonlinear)}; linear below mean fill: {linear < mean}")
    if timing:
        print(f"\nimpute: {1000 * timing[0]:.2f} ms per image (10 samples, batched); "
              f"DIP fit of one image ({args.dip_steps} steps): {timing[1]:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
