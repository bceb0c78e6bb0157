"""WeightedConv1D/2D/3D: mask-normalised convolution with mask propagation."""

import math

import keras
import tensorflow as tf

from sparselayers.layers import image_and_mask

__all__ = ["WeightedConv1D", "WeightedConv2D", "WeightedConv3D"]


class WeightedConv:
    """Mixin holding the sparsity-aware convolution (paper eqs. 11-12).

    Combined with `keras.layers.Conv1D/2D/3D`, whose kernel, bias, config and
    output-shape logic it reuses. For output position ``k`` with window
    ``N(k)`` (kernel volume x mask channels, padding counted as unobserved):

        y_k = |N(k)| / sum_{j in N(k)} m_j * sum_{j in N(k)} m_j x_j c_j + b
              where the window has an observed entry, else y_k = 0 (no bias);
        new_mask_k = 1 where the window has an observed entry, else 0;

    then `activation` is applied to ``y``. With an all-ones mask and
    ``padding="valid"`` this is exactly the plain convolution.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="same", dilation_rate=1,
                 activation=None, use_bias=True, **kwargs):
        data_format = kwargs.get("data_format") or "channels_last"
        if data_format != "channels_last":
            raise ValueError(
                f"{type(self).__name__} supports data_format='channels_last' only; "
                f"received data_format={data_format!r}."
            )
        if kwargs.get("groups", 1) != 1:
            raise ValueError(
                f"{type(self).__name__} supports groups=1 only; received "
                f"groups={kwargs['groups']}."
            )
        if str(padding).lower() not in ("same", "valid"):
            raise ValueError(
                f"{type(self).__name__}: padding must be 'same' or 'valid'; "
                f"received padding={padding!r}."
            )
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(
                f"{type(self).__name__}: `filters` must be a positive integer; "
                f"received filters={filters!r}."
            )
        super().__init__(filters, kernel_size, strides=strides, padding=str(padding).lower(),
                         dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         **kwargs)
        self.input_spec = None  # two inputs; checked in `build`.

    def build(self, input_shape):
        image_shape, _ = self._check_shapes(input_shape)
        super().build(image_shape)
        self.input_spec = None

    def _check_shapes(self, input_shape):
        name = type(self).__name__
        image_shape, mask_shape = image_and_mask.check_image_and_mask_shapes(
            input_shape, name
        )
        if len(image_shape) != self.rank + 2:
            raise ValueError(
                f"{name} expects inputs of rank {self.rank + 2} (batch, "
                f"{self.rank} spatial axes, channels); received image shape "
                f"{image_shape}."
            )
        if image_shape[-1] is None:
            raise ValueError(
                f"{name}: the number of image channels must be known; received "
                f"image shape {image_shape}."
            )
        return image_shape, mask_shape

    def call(self, inputs):
        image, mask = image_and_mask.image_and_mask_tensors(
            inputs, type(self).__name__, self.compute_dtype)
        if mask.dtype == tf.bool:
            mask_observed = mask
        else:
            mask_observed = mask > tf.cast(0.5, mask.dtype)
        image = image_and_mask.zero_missing(
            image, tf.broadcast_to(mask_observed, tf.shape(image))
        )
        # Observed entries per window: counts per position (summed over the
        # mask's channels), then a box sum with a kernel of ones. Exact in
        # float32 for any realistic window.
        counts = tf.reduce_sum(tf.cast(mask_observed, "float32"), axis=-1, keepdims=True)
        ones = tf.ones(self.kernel_size + (1, 1), "float32")
        window_counts = self.convolution_op(counts, ones)  # (B, *out, 1)
        window_size = float(math.prod(self.kernel_size) * mask.shape[-1])
        has_observed = window_counts > 0.5
        scale = tf.where(has_observed, window_size / tf.maximum(window_counts, 1.0), 0.0)

        outputs = self.convolution_op(image, self.kernel)
        outputs = outputs * tf.cast(scale, outputs.dtype)
        if self.use_bias:
            outputs = tf.where(has_observed, outputs + self.bias, tf.zeros_like(outputs))
        if self.activation is not None:
            outputs = self.activation(outputs)
        new_mask = tf.cast(has_observed, self.compute_dtype)
        return [outputs, new_mask]

    def compute_output_shape(self, input_shape):
        if input_shape and not isinstance(input_shape[0], (list, tuple)):
            # A single image shape: the call made by keras' `BaseConv.build`.
            return super().compute_output_shape(input_shape)
        image_shape, _ = self._check_shapes(input_shape)
        output_shape = tuple(super().compute_output_shape(image_shape))
        return [output_shape, output_shape[:-1] + (1,)]


@keras.saving.register_keras_serializable(package="sparselayers")
class WeightedConv1D(WeightedConv, keras.layers.Conv1D):
    """Mask-normalised 1-D convolution; `layer([x, mask])` -> `[y, new_mask]`.

    x: (batch, steps, channels); mask: same shape or 1 channel.
    y: (batch, new_steps, filters); new_mask: (batch, new_steps, 1).
    Arguments as `keras.layers.Conv1D` (padding 'same' by default, 'same' or
    'valid' only); the computation is described in `WeightedConv`.

    Example:

    >>> x = keras.Input((100, 3)); m = keras.Input((100, 1))
    >>> y, m2 = WeightedConv1D(8, 5)([x, m])
    """



@keras.saving.register_keras_serializable(package="sparselayers")
class WeightedConv2D(WeightedConv, keras.layers.Conv2D):
    """Mask-normalised 2-D convolution; `layer([x, mask])` -> `[y, new_mask]`.

    x: (batch, H, W, channels); mask: same shape or 1 channel.
    y: (batch, H', W', filters); new_mask: (batch, H', W', 1).
    Arguments as `keras.layers.Conv2D` (padding 'same' by default, 'same' or
    'valid' only); the computation is described in `WeightedConv`.

    Example:

    >>> x = keras.Input((28, 28, 1)); m = keras.Input((28, 28, 1))
    >>> y, m2 = WeightedConv2D(16, 3, activation="relu")([x, m])
    """



@keras.saving.register_keras_serializable(package="sparselayers")
class WeightedConv3D(WeightedConv, keras.layers.Conv3D):
    """Mask-normalised 3-D convolution; `layer([x, mask])` -> `[y, new_mask]`.

    x: (batch, X, Y, Z, channels); mask: same shape or 1 channel.
    y: (batch, X', Y', Z', filters); new_mask: (batch, X', Y', Z', 1).
    Arguments as `keras.layers.Conv3D` (padding 'same' by default, 'same' or
    'valid' only); the computation is described in `WeightedConv`.

    Example:

    >>> x = keras.Input((32, 32, 32, 1)); m = keras.Input((32, 32, 32, 1))
    >>> y, m2 = WeightedConv3D(8, 3)([x, m])
    """

