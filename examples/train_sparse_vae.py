"""Train sparse VAE variants on images with random missing pixels and compare.

For each missing fraction (default 75%), every chosen variant of the paper
(§4.3.2) is trained on the sparse training images only — no complete image is
ever seen — then imputes the test images by conditional mean (eq. 8). Prints
the missing-pixel MSE of each variant beside mean filling, and writes a figure
per fraction: truth / mask / mean fill / each variant, each row labelled with
its MSE ("linear subspace" is the paper's linear model, not interpolation).

Data: by default 3,500 MNIST digits shipped with the examples
(``examples/data/mnist_3500.npz``, offline; 2,975 train, 525 test);
``--dataset digits`` is scikit-learn's embedded 8x8 digits (offline, 1797
images; too small for two poolings to help: the linear subspace model wins
there); ``--dataset mnist`` or ``fashion_mnist`` downloads through
keras.datasets; ``--data PATH`` reads a local .npz / .npy / MNIST IDX (.gz)
file.

    python examples/train_sparse_vae.py                       # about 2 minutes, offline
    python examples/train_sparse_vae.py --dataset mnist --missing 0.75 0.9 --epochs 20
"""

import os
import time

# Before TensorFlow is imported: hide its C++ log lines (see sparselayers.console).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from example_utils import VARIANT_NAMES  # noqa: E402
from example_utils import argument_parser  # noqa: E402
from example_utils import import_tensorflow  # noqa: E402
from example_utils import load_images  # noqa: E402
from example_utils import progress_verbosity  # noqa: E402
from example_utils import save_grid  # noqa: E402

DEFAULT_VARIANTS = "linear,conv-zero,conv-interp,conv-sparse"
LABELS = {"linear": "linear subspace"}


def levels_for(size):
    """Pooling levels: 2 for 8x8 or 28x28 images, fewer if the size is odd."""
    levels = 0
    while levels < 2 and size % 2 ** (levels + 1) == 0:
        levels += 1
    return levels


def train_variant(name, train, train_mask, pixel_mean, args, verbose):
    import keras
    import sparselayers

    model = sparselayers.build_variant(
        name, train.shape[1:], args.latent, filters=args.filters,
        levels=levels_for(min(train.shape[1:3])), noise_sigma=args.noise_sigma,
        pixel_mean=pixel_mean, regularization=args.regularization,
    )
    model.compile(keras.optimizers.Adam(args.learning_rate))
    model.fit((train, train_mask), batch_size=args.batch_size, epochs=args.epochs,
              verbose=verbose)
    return model


def label(name):
    """How a row is called in the table and the figure ("linear" is the linear subspace model,
    not linear interpolation)."""
    return LABELS.get(name, name)


def print_comparison(results, missing, variants):
    """One line per convolutional variant: its MSE against the linear subspace model and mean fill."""
    for name in variants:
        if name == "linear":
            continue
        line = f"  {name}: {relative_change(results, missing, name, 'mean fill')} vs mean fill"
        if "linear" in variants:
            line += f", {relative_change(results, missing, name, 'linear')} vs linear subspace"
        print(line)


def relative_change(results, missing, name, baseline):
    change = results[(missing, name)] / results[(missing, baseline)] - 1
    return f"{100 * change:+.0f}%"


def build_parser():
    parser = argument_parser(__doc__)
    parser.add_argument("--dataset", default="mnist-sample",
                        choices=["mnist-sample", "digits", "mnist", "fashion_mnist"],
                        help="mnist-sample: 3,500 MNIST digits shipped in examples/data "
                             "(offline); digits: scikit-learn's embedded 8x8 digits (offline); "
                             "mnist and fashion_mnist are downloaded by keras.datasets")
    parser.add_argument("--data", help="local .npz/.npy/IDX images (overrides --dataset)")
    parser.add_argument("--limit", type=int, help="use at most this many images")
    parser.add_argument("--missing", type=float, nargs="+", default=[0.75],
                        help="missing fractions, e.g. 0.75 0.9")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"comma-separated, from: {', '.join(VARIANT_NAMES)}")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per variant")
    parser.add_argument("--batch-size", type=int, default=64, help="images per training step")
    parser.add_argument("--latent", type=int, default=10, help="latent dimension d")
    parser.add_argument("--filters", type=int, default=16,
                        help="channels of the first convolution (doubled per level)")
    parser.add_argument("--noise-sigma", type=float, default=0.2,
                        help="pixel noise sigma of the sparse VAE")
    parser.add_argument("--regularization", type=float, default=1e-3,
                        help="lambda of the SparseDense layers")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's")
    parser.add_argument("--test-fraction", type=float, default=0.15,
                        help="share of the images held out for testing")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="outputs", help="folder for the figures")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in variants if name not in VARIANT_NAMES]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANT_NAMES)}")

    import_tensorflow()
    import keras
    from sparselayers import masks

    keras.utils.set_random_seed(args.seed)
    images = load_images(args.dataset, args.data, args.limit)
    order = np.random.default_rng(args.seed).permutation(len(images))
    images = images[order]
    split = int(len(images) * (1 - args.test_fraction))
    results = {}
    for missing in args.missing:
        mask = masks.random_missing(images.shape[:-1], missing, seed=args.seed)[..., None]
        sparse = np.where(mask > 0, images, np.nan).astype("float32")
        train, train_mask = sparse[:split], mask[:split]
        test, test_mask, truth = sparse[split:], mask[split:], images[split:]
        missing_entries = test_mask == 0

        counts = train_mask.sum(axis=0)
        pixel_mean = np.where(counts > 0, np.nansum(train, axis=0) / np.maximum(counts, 1),
                              np.nanmean(train))
        imputations = {"mean fill": np.where(test_mask > 0, truth, pixel_mean)}
        for name in variants:
            print(f"\n== {name}, {100 * missing:.0f}% missing ==")
            started = time.time()
            model = train_variant(name, train, train_mask, pixel_mean, args,
                                  verbose=progress_verbosity(args.quiet))
            imputations[name] = model.impute(test, test_mask, num_samples=10, seed=args.seed)
            print(f"trained and imputed in {time.time() - started:.0f} s")

        print(f"\nmissing-pixel MSE, {len(truth)} test images, {100 * missing:.0f}% missing:")
        for name, imputed in imputations.items():
            mse = float(np.mean((imputed - truth)[missing_entries] ** 2))
            results[(missing, name)] = mse
            print(f"  {label(name):<18} {mse:.4f}")
        print_comparison(results, missing, variants)
        path = os.path.join(args.out, f"sparse_vae_{int(100 * missing)}.png")
        shown = slice(0, 10)
        rows = ["mean fill"] + variants
        save_grid(
            path,
            [truth[shown], test_mask[shown]]
            + [np.clip(imputations[name][shown], 0, 1) for name in rows],
            ["truth", "mask\n(white: observed,\nblack: missing)"]
            + [f"{label(name)}\nMSE {results[(missing, name)]:.4f}" for name in rows],
            title=f"{100 * missing:.0f}% of the pixels missing: conditional-mean imputations "
                  f"of {len(truth)} test images (missing-pixel MSE)",
        )
        print(f"figure: {path}")
    return results


if __name__ == "__main__":
    main()
