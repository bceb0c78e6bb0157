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

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from example_utils import load_images, save_grid  # noqa: E402
from sparselayers import SparseDense  # noqa: E402
from sparselayers import masks  # noqa: E402


class LinearSubspace(keras.Model):
    """Encoder = SparseDense pseudo-inverse, decoder = the same layer's decode."""

    def __init__(self, units, regularization, holdout=0.5, **kwargs):
        super().__init__(**kwargs)
        self.subspace = SparseDense(units, regularization=regularization, name="subspace")
        self.holdout = holdout

    def call(self, inputs, training=False):
        image, mask = inputs
        if training and self.holdout > 0:
            # Hide part of the observed pixels from the encoder; the loss still
            # covers all observed pixels, so the model must predict unseen ones
            # rather than interpolate the pixels it was given.
            keep = tf.random.uniform(tf.shape(mask)) >= self.holdout
            mask = tf.where(keep, mask, tf.zeros_like(mask))
        return self.subspace.decode(self.subspace([image, mask]))


def observed_mse(packed_target, prediction):
    """Squared error on observed pixels; target channels are (image, mask)."""
    image, mask = packed_target[..., :1], packed_target[..., 1:]
    squared = tf.where(mask > 0.5, tf.square(image - prediction), 0.0)
    return tf.reduce_sum(squared) / tf.maximum(tf.reduce_sum(mask), 1.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help=".npz/.npy/IDX images (default: sklearn digits)")
    parser.add_argument("--missing", type=float, default=0.75, help="missing fraction")
    parser.add_argument("--units", type=int, default=8, help="subspace size")
    parser.add_argument("--regularization", type=float, default=1.0, help="lambda (sigma^2)")
    parser.add_argument("--holdout", type=float, default=0.5,
                        help="fraction of observed pixels hidden from the encoder in training")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/linear_subspace.png", help="figure path")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    images = load_images("digits", args.data)
    mask = masks.random_missing(images.shape[:-1], args.missing, seed=args.seed)[..., None]
    sparse = np.where(mask > 0, images, np.nan).astype("float32")  # missing = NaN
    split = int(0.8 * len(images))

    model = LinearSubspace(args.units, args.regularization, args.holdout)
    model.compile(keras.optimizers.Adam(0.01), loss=observed_mse)
    target = np.concatenate([np.nan_to_num(sparse), mask], axis=-1)
    model.fit(
        [sparse[:split], mask[:split]], target[:split],
        batch_size=64, epochs=args.epochs, verbose=2,
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
