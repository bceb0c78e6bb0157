"""FillMissing: zero, mean or linear-interpolation filling as a Keras layer.

Used by the paper's simpler model variants (§4.3.2: conv-zero, conv-mean,
conv-interp, conv-interp-wmask), which fill the missing pixels and then use an
ordinary convolutional encoder.
"""

import keras
import numpy as np
import tensorflow as tf

from sparselayers.layers import image_and_mask

__all__ = ["FillMissing", "interpolate_along", "interpolate_rows"]


def interpolate_along(image, observed, axis=-2, fill_value=0.0):
    """Linear interpolation of missing entries along one axis, as `numpy.interp` does.

    Each line of `image` along `axis` is interpolated from its own observed
    entries: linearly between observed neighbours, constant (the nearest
    observed value) beyond the first and last one. A line with no observed
    entry gets `fill_value`. Vectorised: no loop over lines.

    Args:
        image: float tensor, batch first; missing entries may hold NaN or Inf.
        observed: bool tensor of the image's shape.
        axis: the axis to interpolate along (not 0, the batch axis); -2 is
            the image width of (batch, H, W, C) images, 1 their height.
        fill_value: value of lines with no observed entry.

    Returns:
        float tensor of the image's shape; observed entries unchanged.

    Example:

    >>> # Every 3rd row of (batch, H, W, 1) images acquired: fill along H.
    >>> filled = interpolate_along(images, masks > 0.5, axis=1)
    """
    image = tf.convert_to_tensor(image)
    observed = tf.convert_to_tensor(observed)
    rank = image.shape.rank
    if not -rank <= axis < rank or axis % rank == 0:
        raise ValueError(
            f"interpolate_along: axis must be a non-batch axis of an image of rank {rank}; "
            f"received axis={axis}.")
    axis = axis % rank
    order = [i for i in range(rank) if i != axis] + [axis]
    inverse = [order.index(i) for i in range(rank)]
    lines = tf.transpose(image, order)
    seen = tf.transpose(tf.broadcast_to(observed, tf.shape(image)), order)
    filled = _interpolate_last_axis(lines, seen, fill_value)
    return tf.transpose(filled, inverse)


def interpolate_rows(image, observed, fill_value=0.0):
    """`interpolate_along` the second-to-last axis (the width W of (batch, H, W, C))."""
    return interpolate_along(image, observed, axis=-2, fill_value=fill_value)


def _interpolate_last_axis(lines, seen, fill_value):
    """Interpolation along the last axis of (..., L) lines; seen is bool (..., L)."""
    dtype = lines.dtype
    line_shape = tf.shape(lines)
    length = lines.shape[-1]
    if length is None:
        length = tf.shape(lines)[-1]
    lines = tf.reshape(lines, [-1, length])  # (lines, L)
    seen = tf.reshape(seen, [-1, length])
    lines = tf.where(seen, lines, tf.zeros_like(lines))

    positions = tf.range(length)
    # Observed positions first, in increasing order, then the missing ones.
    observed_first = tf.argsort(tf.where(seen, positions, positions + length), axis=1,
                                stable=True)
    observed_up_to = tf.cumsum(tf.cast(seen, tf.int32), axis=1)  # observed at <= i
    total = observed_up_to[:, -1:]
    left = tf.gather(observed_first, tf.maximum(observed_up_to - 1, 0), batch_dims=1)
    right = tf.gather(observed_first, tf.minimum(observed_up_to, length - 1), batch_dims=1)
    has_left = observed_up_to > 0
    has_right = observed_up_to < total
    left_value = tf.gather(lines, left, batch_dims=1)
    right_value = tf.gather(lines, right, batch_dims=1)
    span = tf.cast(tf.maximum(right - left, 1), dtype)
    weight = tf.cast(positions[None, :] - left, dtype) / span
    between = left_value + weight * (right_value - left_value)
    filled = tf.where(
        has_left & has_right, between,
        tf.where(has_left, left_value, tf.where(has_right, right_value, tf.cast(fill_value, dtype))),
    )
    filled = tf.where(seen, lines, filled)
    return tf.reshape(filled, line_shape)


@keras.saving.register_keras_serializable(package="sparselayers")
class FillMissing(keras.layers.Layer):
    """Fills the missing entries of ``[image, mask]``; returns the filled image.

    Args:
        method: "zero", "mean" (the pixel-wise dataset mean: call `adapt`
            first, or pass `pixel_mean`) or "interp" (`interpolate_along`,
            with the pixel mean — or 0 — where a line has no observed entry).
        append_mask: if True, the mask (one channel per image channel) is
            appended as extra channels (the conv-interp-wmask variant).
        mask_channel: what the appended mask holds: "binary" (1 where
            observed, 0 where missing) or "values" (the mask's own value where
            observed, 0 where missing: a soft observation weight, such as the
            position of a thick-slice cut's rows relative to its slices,
            `sparselayers.mri.slice_profile.row_mask`). Equal for 0/1 masks.
        pixel_mean: optional array of the image's shape (without batch).
        axis: for "interp", the axis to interpolate along: an int (a spatial
            axis of the batched image: 1 is the height H of (batch, H, W, C),
            -2 or 2 its width W; the default -2 keeps the original row-wise
            behaviour), or "both" for 2-D images: the mean of the
            interpolations along H and along W where both lines hold observed
            entries, the one that does otherwise (random pixel masks). For
            thick-slice cuts, name the acquisition axis (rows every n-th
            observed along H: ``axis=1``). For (batch, features) inputs,
            which have no channel axis, ``axis=-1`` (the features); the
            batch axis is never an interpolation axis.

    Example:

    >>> fill = FillMissing("mean"); fill.adapt(images, masks)
    >>> filled = fill([images, masks])
    >>> FillMissing("interp", axis=1)([cuts, cut_masks])  # along H
    """

    def __init__(self, method="zero", append_mask=False, pixel_mean=None, axis=-2,
                 mask_channel="binary", **kwargs):
        super().__init__(**kwargs)
        if mask_channel not in ("binary", "values"):
            raise ValueError(f"mask_channel must be 'binary' or 'values'; received "
                             f"{mask_channel!r}.")
        self.mask_channel = mask_channel
        if method not in ("zero", "mean", "interp"):
            raise ValueError(f"method must be 'zero', 'mean' or 'interp'; received {method!r}.")
        if not (axis == "both" or (isinstance(axis, (int, np.integer)) and axis != 0)):
            raise ValueError(
                f"axis must be a non-zero int (a spatial axis of the batched image) or 'both'; "
                f"received {axis!r}.")
        self.method = method
        self.append_mask = bool(append_mask)
        self.axis = axis if axis == "both" else int(axis)
        self._initial_mean = None if pixel_mean is None else np.asarray(pixel_mean, np.float32)

    def build(self, input_shape):
        image_shape, _ = image_and_mask.check_image_and_mask_shapes(input_shape, "FillMissing")
        rank = len(image_shape)
        if self.axis == "both" and rank != 4:
            raise ValueError(
                f"FillMissing(axis='both') needs 2-D images (batch, H, W, C); received image "
                f"shape {image_shape}.")
        if self.method == "interp" and self.axis != "both":
            # (batch, features) inputs have no channel axis: their one axis
            # to interpolate along is the last. Other ranks end with channels.
            last = rank if rank == 2 else rank - 1
            if not -rank <= self.axis < last or self.axis % rank == 0:
                batch_note = " (the batch axis)" if self.axis % rank == 0 else ""
                raise ValueError(
                    f"FillMissing: axis={self.axis}{batch_note} is not an axis to interpolate "
                    f"along for inputs of shape {image_shape}; use "
                    + ("axis=-1 (the features) for (batch, features) inputs." if rank == 2 else
                       f"a spatial axis, 1..{rank - 2} or -2..-{rank - 1}."))
        if self.method == "mean" or self.method == "interp":
            if any(size is None for size in image_shape[1:]) and self._initial_mean is None:
                # Images of any size (fully convolutional models): the mean
                # fallback is a scalar 0 rather than a per-pixel weight.
                self.pixel_mean = None
                return
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
        image_and_mask.check_observed_finite(images, observed, "FillMissing.adapt")
        if not self.built:
            self.build([(None,) + images.shape[1:], (None,) + np.shape(masks)[1:]])
        if self.pixel_mean is None:
            raise ValueError("FillMissing.adapt needs images of a fixed size; this layer was "
                             "built for images of any size.")
        sums = np.where(observed, images, 0.0).sum(axis=0)
        counts = observed.sum(axis=0)
        overall = sums.sum() / max(counts.sum(), 1)
        self.pixel_mean.assign(np.where(counts > 0, sums / np.maximum(counts, 1), overall))

    def call(self, inputs):
        image, mask = image_and_mask.image_and_mask_tensors(inputs, "FillMissing",
                                                             self.compute_dtype)
        observed = image_and_mask.observed_entries(mask, image)
        image = image_and_mask.zero_missing(image, observed)
        if self.pixel_mean is None:
            mean = tf.zeros_like(image)
        else:
            mean = tf.broadcast_to(tf.cast(self.pixel_mean, image.dtype)[None], tf.shape(image))
        if self.method == "mean":
            filled = tf.where(observed, image, mean)
        elif self.method == "interp":
            axes = (1, 2) if self.axis == "both" else (self.axis,)
            total = tf.zeros_like(image)
            count = tf.zeros_like(image)
            for axis in axes:
                line_has_entry = tf.reduce_any(observed, axis=axis, keepdims=True)
                line_has_entry = tf.broadcast_to(line_has_entry, tf.shape(image))
                along = interpolate_along(image, observed, axis=axis)
                total += tf.where(line_has_entry, along, tf.zeros_like(along))
                count += tf.cast(line_has_entry, image.dtype)
            filled = tf.where(count > 0, total / tf.maximum(count, 1), mean)
            filled = tf.where(observed, image, filled)
        else:
            filled = image
        if self.append_mask:
            if self.mask_channel == "values":
                values = tf.broadcast_to(tf.cast(mask, filled.dtype), tf.shape(filled))
                channel = tf.where(observed, values, tf.zeros_like(values))
            else:
                channel = tf.cast(observed, filled.dtype)
            filled = tf.concat([filled, channel], axis=-1)
        return filled

    def compute_output_shape(self, input_shape):
        image_shape, _ = image_and_mask.check_image_and_mask_shapes(input_shape, "FillMissing")
        if self.append_mask:
            channels = None if image_shape[-1] is None else 2 * image_shape[-1]
            return tuple(image_shape[:-1]) + (channels,)
        return tuple(image_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"method": self.method, "append_mask": self.append_mask,
                       "axis": self.axis, "mask_channel": self.mask_channel})
        return config
