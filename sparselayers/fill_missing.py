"""FillMissing: zero, mean or linear-interpolation filling as a Keras layer.

Used by the paper's simpler model variants (§4.3.2: conv-zero, conv-mean,
conv-interp, conv-interp-wmask), which fill the missing pixels and then use an
ordinary convolutional encoder.
"""

import keras
import numpy as np
import tensorflow as tf

from sparselayers import image_and_mask


def interpolate_rows(image, observed, fill_value=0.0):
    """Linear interpolation of missing entries along the second-to-last axis' rows.

    For images (batch, H, W, C), each row ``image[b, i, :, c]`` is interpolated
    along W from its observed entries, as `numpy.interp` does: linear between
    observed neighbours, constant beyond the first and last observed entry.
    A row with no observed entry gets `fill_value`. Vectorised: no loop.

    Args:
        image: (batch, ..., W, C) float tensor; missing entries may hold NaN.
        observed: bool tensor of the image's shape.

    Returns:
        float tensor of the image's shape; observed entries unchanged.
    """
    image = tf.convert_to_tensor(image)
    dtype = image.dtype
    # Rows along axis -2: move it last and flatten the rest, (rows, W).
    rank = image.shape.rank
    order = list(range(rank - 2)) + [rank - 1, rank - 2]
    rows = tf.transpose(image, order)
    seen = tf.transpose(observed, order)
    transposed_shape = tf.shape(rows)
    width = rows.shape[-1]
    rows = tf.reshape(rows, [-1, width])
    seen = tf.reshape(seen, [-1, width])
    rows = tf.where(seen, rows, tf.zeros_like(rows))

    positions = tf.range(width)
    # Observed positions first, in increasing order, then the missing ones.
    observed_first = tf.argsort(tf.where(seen, positions, positions + width), axis=1, stable=True)
    observed_up_to = tf.cumsum(tf.cast(seen, tf.int32), axis=1)  # observed at <= i
    total = observed_up_to[:, -1:]
    left = tf.gather(observed_first, tf.maximum(observed_up_to - 1, 0), batch_dims=1)
    right = tf.gather(observed_first, tf.minimum(observed_up_to, width - 1), batch_dims=1)
    has_left = observed_up_to > 0
    has_right = observed_up_to < total
    left_value = tf.gather(rows, left, batch_dims=1)
    right_value = tf.gather(rows, right, batch_dims=1)
    span = tf.cast(tf.maximum(right - left, 1), dtype)
    weight = tf.cast(positions[None, :] - left, dtype) / span
    between = left_value + weight * (right_value - left_value)
    filled = tf.where(
        has_left & has_right, between,
        tf.where(has_left, left_value, tf.where(has_right, right_value, tf.cast(fill_value, dtype))),
    )
    filled = tf.where(seen, rows, filled)
    filled = tf.reshape(filled, transposed_shape)
    return tf.transpose(filled, order)


@keras.saving.register_keras_serializable(package="sparselayers")
class FillMissing(keras.layers.Layer):
    """Fills the missing entries of ``[image, mask]``; returns the filled image.

    Args:
        method: "zero", "mean" (the pixel-wise dataset mean: call `adapt`
            first, or pass `pixel_mean`) or "interp" (`interpolate_rows`, with
            the pixel mean — or 0 — for rows with no observed pixel).
        append_mask: if True, the mask (one channel per image channel) is
            appended as extra channels (the conv-interp-wmask variant).
        pixel_mean: optional array of the image's shape (without batch).

    Example:

    >>> fill = FillMissing("mean"); fill.adapt(images, masks)
    >>> filled = fill([images, masks])
    """

    def __init__(self, method="zero", append_mask=False, pixel_mean=None, **kwargs):
        super().__init__(**kwargs)
        if method not in ("zero", "mean", "interp"):
            raise ValueError(f"method must be 'zero', 'mean' or 'interp'; received {method!r}.")
        self.method = method
        self.append_mask = bool(append_mask)
        self._initial_mean = None if pixel_mean is None else np.asarray(pixel_mean, np.float32)

    def build(self, input_shape):
        image_shape, _ = image_and_mask.check_image_and_mask_shapes(input_shape, "FillMissing")
        self.pixel_mean = self.add_weight(
            name="pixel_mean", shape=image_shape[1:], trainable=False,
            initializer=keras.initializers.Zeros(),
        )
        if self._initial_mean is not None:
            self.pixel_mean.assign(self._initial_mean)

    def adapt(self, images, masks):
        """Sets the pixel-wise mean from the observed values of a dataset."""
        images = np.asarray(images, np.float32)
        observed = np.broadcast_to(np.asarray(masks) > 0.5, images.shape)
        if not self.built:
            self.build([(None,) + images.shape[1:], (None,) + np.shape(masks)[1:]])
        sums = np.where(observed, images, 0.0).sum(axis=0)
        counts = observed.sum(axis=0)
        overall = sums.sum() / max(counts.sum(), 1)
        self.pixel_mean.assign(np.where(counts > 0, sums / np.maximum(counts, 1), overall))

    def call(self, inputs):
        image, mask = image_and_mask.split_inputs(inputs, "FillMissing")
        observed = image_and_mask.observed_entries(mask, image)
        image = image_and_mask.zero_missing(image, observed)
        mean = tf.cast(self.pixel_mean, image.dtype)[None]
        if self.method == "mean":
            filled = tf.where(observed, image, mean)
        elif self.method == "interp":
            filled = interpolate_rows(image, observed)
            row_empty = tf.logical_not(tf.reduce_any(observed, axis=-2, keepdims=True))
            filled = tf.where(row_empty, tf.broadcast_to(mean, tf.shape(image)), filled)
        else:
            filled = image
        if self.append_mask:
            filled = tf.concat([filled, tf.cast(observed, filled.dtype)], axis=-1)
        return filled

    def compute_output_shape(self, input_shape):
        image_shape, _ = image_and_mask.check_image_and_mask_shapes(input_shape, "FillMissing")
        if self.append_mask:
            channels = None if image_shape[-1] is None else 2 * image_shape[-1]
            return tuple(image_shape[:-1]) + (channels,)
        return tuple(image_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"method": self.method, "append_mask": self.append_mask})
        return config
