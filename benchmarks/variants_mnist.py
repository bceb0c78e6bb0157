"""Paper §4.3 / Fig. 5 on MNIST: missing-pixel MSE of every model variant.

Protocol, MNIST's standard split: the 60,000 training images for training
(sparse only: the models never see a complete image; no setting is chosen
here, so no validation images are held out), the 10,000 test images for
testing; random missing pixels at 75% and 90%. Every variant gets the same
budget (--epochs, batch 64, Adam 1e-3, latent size 10, noise sigma
--noise-sigma) and imputes the test set by conditional mean (eq. 8, 10
samples). Mean fill is the pixel-wise mean of the observed training pixels.

Paper Fig. 8 / §4.5, sparse VAE vs Deep Image Prior at the highest missing
fraction: a DIP (`imputers.fit_dip`, the conv-sparse decoder's architecture,
--dip-steps steps) is fitted to each of the first --dip-images test images;
its missing-pixel MSE on them beside the conv-sparse VAE's, and the time per
image of each (the paper: 18.6 ms vs 36.5 s for MRI slices).

    python benchmarks/variants_mnist.py [--epochs 2] [--train-images 60000]
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

import imputers  # noqa: E402
import sparselayers  # noqa: E402
from sparselayers import masks  # noqa: E402
import mnist_split  # noqa: E402  (benchmarks/mnist_split.py)

METHODS = ("linear", "conv-zero", "conv-mean", "conv-interp", "conv-interp-wmask",
           "conv-sparse", "conv-FC-sparse")


def compare_with_dip(model, test, test_mask, truth, args):
    """(VAE MSE, DIP MSE, VAE s per image, DIP s per image) on the first --dip-images images."""
    shown = slice(0, args.dip_images)
    missing_entries = test_mask[shown] == 0
    model.impute(test[:256], test_mask[:256])  # warm-up
    started = time.perf_counter()
    model.impute(test, test_mask, num_samples=10)
    vae_time = (time.perf_counter() - started) / len(test)
    vae = model.impute(test[shown], test_mask[shown], num_samples=10, seed=args.seed)
    started = time.perf_counter()
    dip = imputers.fit_dip(model.decoder, test[shown], test_mask[shown], steps=args.dip_steps,
                           seed=args.seed, verbose=0)
    dip_time = (time.perf_counter() - started) / args.dip_images
    return (float(np.mean((vae - truth[shown])[missing_entries] ** 2)),
            float(np.mean((dip - truth[shown])[missing_entries] ** 2)), vae_time, dip_time)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", help="folder with MNIST's train- and t10k-images-idx3-ubyte.gz")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=60000)
    parser.add_argument("--missing", type=float, nargs="+", default=[0.75, 0.9])
    parser.add_argument("--noise-sigma", type=float, default=0.2)
    parser.add_argument("--dip-steps", type=int, default=1000)
    parser.add_argument("--dip-images", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train_images, test_images = mnist_split.load_or_explain(args.mnist)
    train_images = train_images[:args.train_images]
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
            if name == "conv-sparse" and missing == max(args.missing):
                timing = compare_with_dip(model, test, test_mask, test_images, args)
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
        vae_mse, dip_mse, vae_time, dip_time = timing
        print(f"\nFig. 8, {100 * max(args.missing):.0f}% missing, the first {args.dip_images} test "
              f"images: missing-pixel MSE conv-sparse VAE {vae_mse:.4f}, DIP ({args.dip_steps} "
              f"steps) {dip_mse:.4f}")
        print(f"time per image: VAE impute {1000 * vae_time:.2f} ms (10 samples, batched), "
              f"DIP {dip_time:.2f} s (fitted {args.dip_images} at once) -> "
              f"{dip_time / vae_time:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
