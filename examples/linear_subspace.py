"""Linear subspace imputation with one SparseDense layer (paper eqs. 13-15).

Trains ``y = W r + mu`` on images with randomly missing pixels only (no image
is ever seen complete): the SparseDense layer encodes each image from its
observed pixels by the masked regularised pseudo-inverse (eq. 10), and its
``decode`` maps the code back to pixels (eq. 15). The loss is the squared error
on observed pixels. Prints the missing-pixel MSE against mean filling and saves
a figure (truth / mask / mean fill / linear subspace).

Default data: scikit-learn's embedded 8x8 digits (offline). ``--data PATH``
reads local images: an .npz with an ``images`` (or ``x``) array, an .npy, or
an MNIST IDX file (.gz), of shape (n, H, W) or (n, H, W, 1).

    python examples/linear_subspace.py --missing 0.75 --units 8 --epochs 40
"""

import os

# Before TensorFlow is imported: hide its C++ log lines (see sparselayers.console).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from example_utils import argument_parser  # noqa: E402
from example_utils import import_tensorflow  # noqa: E402
from example_utils import load_images  # noqa: E402
from example_utils import progress_verbosity  # noqa: E402
from example_utils import save_grid  # noqa: E402


def linear_subspace_model(units, regularization, holdout):
    """Encoder = SparseDense pseudo-inverse, decoder = the same layer's decode."""
    import keras
    import tensorflow as tf

    from sparselayers import SparseDense

    class LinearSubspace(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.subspace = SparseDense(units, regularization=regularization, name="subspace")

        def call(self, inputs, training=False):
            image, mask = inputs
            if training and holdout > 0:
                # Hide part of the observed pixels from the encoder; the loss
                # still covers all observed pixels, so the model must predict
                # unseen ones rather than interpolate the pixels it was given.
                keep = tf.random.uniform(tf.shape(mask)) >= holdout
                mask = tf.where(keep, mask, tf.zeros_like(mask))
            return self.subspace.decode(self.subspace([image, mask]))

    def observed_mse(packed_target, prediction):
        """Squared error on observed pixels; target channels are (image, mask)."""
        image, mask = packed_target[..., :1], packed_target[..., 1:]
        squared = tf.where(mask > 0.5, tf.square(image - prediction), 0.0)
        return tf.reduce_sum(squared) / tf.maximum(tf.reduce_sum(mask), 1.0)

    return LinearSubspace(), observed_mse


def build_parser():
    parser = argument_parser(__doc__)
    parser.add_argument("--data", help=".npz/.npy/IDX images (default: sklearn digits)")
    parser.add_argument("--missing", type=float, default=0.75, help="missing fraction")
    parser.add_argument("--units", type=int, default=8, help="subspace size")
    parser.add_argument("--regularization", type=float, default=1.0, help="lambda (sigma^2)")
    parser.add_argument("--holdout", type=float, default=0.5,
                        help="fraction of observed pixels hidden from the encoder in training")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="outputs/linear_subspace.png", help="figure path")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    import_tensorflow()

    import keras

    from sparselayers import masks

    keras.utils.set_random_seed(args.seed)
    images = load_images("digits", args.data)
    mask = masks.random_missing(images.shape[:-1], args.missing, seed=args.seed)[..., None]
    sparse = np.where(mask > 0, images, np.nan).astype("float32")  # missing = NaN
    split = int(0.8 * len(images))

    model, observed_mse = linear_subspace_model(args.units, args.regularization, args.holdout)
    model.compile(keras.optimizers.Adam(0.01), loss=observed_mse)
    target = np.concatenate([np.nan_to_num(sparse), mask], axis=-1)
    model.fit(
        [sparse[:split], mask[:split]], target[:split],
        batch_size=64, epochs=args.epochs, verbose=progress_verbosity(args.quiet),
    )

    test_images, test_mask = images[split:], mask[split:]
    imputed = model.predict([sparse[split:], test_mask], batch_size=256, verbose=0)
    imputed = np.where(test_mask > 0, test_images, np.clip(imputed, 0, 1))
    pixel_mean = np.nanmean(sparse[:split], axis=0)
    mean_fill = np.where(test_mask > 0, test_images, pixel_mean)
    missing = test_mask == 0
    mse_subspace = float(np.mean((imputed - test_images)[missing] ** 2))
    mse_mean = float(np.mean((mean_fill - test_images)[missing] ** 2))
    print(f"missing-pixel MSE on {len(test_images)} test images "
          f"({100 * args.missing:.0f}% missing):")
    print(f"  mean fill        {mse_mean:.4f}")
    print(f"  linear subspace  {mse_subspace:.4f}  (SparseDense, {args.units} units)")

    shown = slice(0, 10)
    save_grid(
        args.out,
        [test_images[shown], test_mask[shown], mean_fill[shown], imputed[shown]],
        ["truth", "mask", "mean fill", "subspace"],
    )
    print(f"figure: {args.out}")
    return mse_subspace, mse_mean


if __name__ == "__main__":
    main()
