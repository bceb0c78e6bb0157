"""Checks and conversions shared by the layers that take ``[image, mask]``.

Conventions, for every layer of the package: ``mask`` is 1 where an entry is
observed and 0 where it is missing; bool and float masks are accepted, a float
mask meaning "observed" where it is > 0.5. The mask has the image's shape, or
the same shape with a single channel (last axis), broadcast over channels,
and the image's batch size (a mask of batch 1 is not broadcast over a batch).
Missing entries of the image may hold anything, NaN and Inf included.
"""

import numpy as np
import tensorflow as tf

__all__ = ["check_positive_int", "check_observed_finite"]


def split_inputs(inputs, layer_name):
    """Returns ``(image, mask)`` from ``inputs``, a list of exactly two items."""
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        count = len(inputs) if isinstance(inputs, (list, tuple)) else 1
        raise ValueError(
            f"{layer_name} expects inputs [image, mask] (2 tensors); "
            f"received {count} input(s): {inputs!r:.200}"
        )
    return inputs[0], inputs[1]


def image_and_mask_tensors(inputs, layer_name, dtype):
    """``(image, mask)`` tensors from a layer's inputs, checked.

    The image is floating (integer images are cast to `dtype`) and the two
    have the same batch size (`check_batch_sizes`).
    """
    image, mask = split_inputs(inputs, layer_name)
    image, mask = float_image(image, dtype), tf.convert_to_tensor(mask)
    check_batch_sizes(image, mask, layer_name)
    return image, mask


def check_image_and_mask_shapes(input_shape, layer_name, min_rank=2):
    """Validates a ``[image_shape, mask_shape]`` pair; returns both as tuples.

    Raises:
        ValueError: naming the shapes, if the input count, the ranks, the
            spatial sizes or the mask's channel count do not fit.
    """
    image_shape, mask_shape = split_inputs(input_shape, layer_name)
    image_shape = tuple(image_shape)
    mask_shape = tuple(mask_shape)
    if len(image_shape) < min_rank:
        raise ValueError(
            f"{layer_name} expects an image of rank >= {min_rank} (batch first); "
            f"received image shape {image_shape}."
        )
    if len(mask_shape) != len(image_shape):
        raise ValueError(
            f"{layer_name}: the mask must have the image's rank; received image "
            f"shape {image_shape} and mask shape {mask_shape}."
        )
    for axis, (size, mask_size) in enumerate(zip(image_shape[1:-1], mask_shape[1:-1])):
        if size is not None and mask_size is not None and size != mask_size:
            raise ValueError(
                f"{layer_name}: image and mask differ on axis {axis + 1}; received "
                f"image shape {image_shape} and mask shape {mask_shape}."
            )
    channels, mask_channels = image_shape[-1], mask_shape[-1]
    if mask_channels is not None and mask_channels != 1 and channels is not None:
        if mask_channels != channels:
            raise ValueError(
                f"{layer_name}: the mask must have 1 channel or the image's "
                f"{channels} channels; received image shape {image_shape} and "
                f"mask shape {mask_shape}."
            )
    return image_shape, mask_shape


def observed_entries(mask, image):
    """Boolean tensor of the image's shape, True where the entry is observed."""
    if mask.dtype == tf.bool:
        observed = mask
    else:
        observed = mask > tf.cast(0.5, mask.dtype)
    return tf.broadcast_to(observed, tf.shape(image))


def zero_missing(image, observed):
    """The image with missing entries set to exactly 0 (NaN and Inf included).

    `tf.where` rather than a product with the mask: ``0 * NaN`` is NaN, and the
    gradient of `tf.where` is 0 at the entries it does not select.
    """
    return tf.where(observed, image, tf.zeros_like(image))


def check_observed_finite(image, observed, caller):
    """ValueError naming the first sample with a NaN or Inf at an observed entry.

    The policy of every NumPy-facing entry point (imputers, `SparseVAE`
    inference and `fit` on arrays): missing entries may hold anything, but
    an observed value must be finite. Inside a Keras model a bad observed
    value stays in its own sample's output; here it is refused before it can
    poison a batch statistic or a training step.

    Args:
        image: array (n, *shape). observed: bool array of its shape.
        caller: the name shown in the message.
    """
    bad = np.logical_and(observed, ~np.isfinite(image))
    bad = bad.reshape(len(image), int(np.prod(image.shape[1:]))).any(axis=1)
    if bad.any():
        samples = np.flatnonzero(bad)
        raise ValueError(
            f"{caller}: sample {int(samples[0])} holds NaN or Inf at an observed entry "
            f"({len(samples)} sample(s) do: {samples[:10].tolist()}). Observed values must be "
            "finite; mark unknown entries as missing in the mask instead."
        )


def check_positive_int(value, name):
    """`value` as an int >= 1; ValueError naming `name` otherwise (bools too)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{name} must be a positive int; received {name}={value!r}.")
    return int(value)


def check_batch_sizes(image, mask, layer_name):
    """ValueError unless image and mask have the same batch size.

    A mask of batch 1 is not broadcast over the batch: the layers return a
    new mask per sample, and a silently shared mask would hide a data bug.
    Checked statically when both sizes are known, else by a graph assertion
    (an InvalidArgumentError with the same message; XLA drops assertions).
    """
    message = (
        f"{layer_name}: the image and the mask must have the same batch size; received "
        f"image shape {tuple(image.shape)} and mask shape {tuple(mask.shape)}."
    )
    image_batch, mask_batch = image.shape[0], mask.shape[0]
    if image_batch is not None and mask_batch is not None:
        if image_batch != mask_batch:
            raise ValueError(message)
        return
    tf.debugging.assert_equal(tf.shape(image)[0], tf.shape(mask)[0], message=message)


def float_image(image, dtype):
    """The image as a tensor; integer and bool images are cast to `dtype`."""
    image = tf.convert_to_tensor(image)
    if not image.dtype.is_floating:
        image = tf.cast(image, dtype)
    return image
