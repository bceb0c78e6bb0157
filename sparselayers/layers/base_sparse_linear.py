"""Shared machinery of `SparseDense` and `LocallyConnectedSparse2D/3D`.

Both layers cut the image into ``P`` blocks of ``V`` entries (a single block
holding the whole image for `SparseDense`) and compute, for each sample and
block, the sparsity-aware response of paper eq. 10 with the block's own kernel
``W`` (V, units) and pixel-space mean ``mu`` (V,):

    r = (W_O^T W_O + lambda I)^-1 W_O^T (y_O - mu_O).
"""

import keras
import tensorflow as tf

from sparselayers.layers import image_and_mask
from sparselayers.layers.masked_least_squares import linear_algebra_dtype
from sparselayers.layers.masked_least_squares import masked_least_squares

__all__ = ["BaseSparseLinear"]


class BaseSparseLinear(keras.layers.Layer):
    """Base class: weights, the blocked solve, `decode` and the config.

    Subclasses define how an image maps to blocks: `_block_layout`,
    `_to_blocks`, `_from_blocks`, `_response_shape`, and the kernel/bias
    shapes through `_kernel_shape`/`_bias_shape`.
    """

    def __init__(
        self,
        units,
        regularization=1e-3,
        trainable_regularization=False,
        use_bias=True,
        activation=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(
                f"{type(self).__name__}: `units` must be a positive integer; "
                f"received units={units!r}."
            )
        regularization = float(regularization)
        if not 0.0 <= regularization < float("inf"):  # also rejects NaN
            raise ValueError(
                f"{type(self).__name__}: `regularization` must be finite and >= 0; "
                f"received regularization={regularization}."
            )
        self.units = units
        self.regularization = regularization
        self.trainable_regularization = bool(trainable_regularization)
        self.use_bias = bool(use_bias)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    # -- Hooks for subclasses ------------------------------------------------

    def _block_layout(self, image_shape):
        """Returns (num_blocks, block_entries) for an image shape (no batch)."""
        raise NotImplementedError

    def _to_blocks(self, image):
        """(batch, *image_shape) -> (batch, P, V)."""
        raise NotImplementedError

    def _from_blocks(self, blocks):
        """(batch, P, V) -> (batch, *image_shape)."""
        raise NotImplementedError

    def _response_shape(self, image_shape):
        """Output shape without the batch axis, e.g. (units,)."""
        raise NotImplementedError

    def _kernel_shape(self, num_blocks, block_entries):
        raise NotImplementedError

    def _bias_shape(self, num_blocks, block_entries):
        raise NotImplementedError

    # -- Keras layer API -----------------------------------------------------

    def build(self, input_shape):
        image_shape, _ = image_and_mask.check_image_and_mask_shapes(
            input_shape, type(self).__name__
        )
        if any(size is None for size in image_shape[1:]):
            raise ValueError(
                f"{type(self).__name__} needs every non-batch dimension of the "
                f"image to be known at build time; received image shape "
                f"{image_shape}."
            )
        self.image_shape = tuple(int(size) for size in image_shape[1:])
        num_blocks, block_entries = self._block_layout(self.image_shape)
        self.num_blocks = num_blocks
        self.block_entries = block_entries
        # Weights stay in float32 under mixed precision (autocast=False): the
        # Gram matrices and Cholesky factorisations need it.
        self.kernel = self.add_weight(
            name="kernel",
            shape=self._kernel_shape(num_blocks, block_entries),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            autocast=False,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=self._bias_shape(num_blocks, block_entries),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
                autocast=False,
            )
        else:
            self.bias = None
        self.regularization_weight = self.add_weight(
            name="regularization",
            shape=(),
            initializer=keras.initializers.Constant(self.regularization),
            constraint=keras.constraints.NonNeg(),
            trainable=self.trainable_regularization,
            autocast=False,
        )

    def call(self, inputs):
        image, mask = image_and_mask.image_and_mask_tensors(
            inputs, type(self).__name__, self.compute_dtype)
        received = tuple(image.shape[1:])
        if len(received) != len(self.image_shape) or any(
                size is not None and size != built
                for size, built in zip(received, self.image_shape)):
            raise ValueError(
                f"{type(self).__name__} was built for images (batch,) + {self.image_shape}; "
                f"received images (batch,) + {tuple(image.shape[1:])}. A layer's kernel "
                "fits one image shape: use a new layer for another.")
        dtype = linear_algebra_dtype(self.kernel.dtype)
        observed = image_and_mask.observed_entries(mask, image)
        image = image_and_mask.zero_missing(tf.cast(image, dtype), observed)
        image_blocks = self._to_blocks(image)  # (B, P, V)
        observed_blocks = self._to_blocks(observed)  # (B, P, V), bool
        if self.use_bias:
            bias = tf.reshape(tf.cast(self.bias, dtype), (1, self.num_blocks, -1))
            image_blocks = tf.where(
                observed_blocks, image_blocks - bias, tf.zeros_like(image_blocks)
            )
        response = masked_least_squares(
            self._kernel_blocks(),
            image_blocks,
            tf.cast(observed_blocks, dtype),
            self.regularization_weight,
        )  # (B, P, units)
        response = tf.reshape(response, (-1,) + self._response_shape(self.image_shape))
        response = tf.cast(response, self.compute_dtype)
        if self.activation is not None:
            response = self.activation(response)
        return response

    def decode(self, response):
        """Maps responses back to image space: ``W r + mu`` for every block.

        With the identity activation, ``decode(layer([y, mask]))`` is the
        linear-subspace reconstruction of paper eq. 15 (``lambda = sigma^2``).

        Args:
            response: tensor of the layer's output shape (batch first).

        Returns:
            Tensor of the image's shape (batch first), in the compute dtype.
        """
        if not self.built:
            raise ValueError(
                f"{type(self).__name__}.decode needs a built layer: call the "
                "layer on [image, mask] first (or build it)."
            )
        response = tf.convert_to_tensor(response)
        expected = self._response_shape(self.image_shape)
        if tuple(response.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__}.decode expects responses of shape "
                f"(batch,) + {expected}; received {tuple(response.shape)}."
            )
        dtype = linear_algebra_dtype(self.kernel.dtype)
        response = tf.reshape(tf.cast(response, dtype), (-1, self.num_blocks, self.units))
        blocks = tf.einsum("bpu,pvu->bpv", response, self._kernel_blocks())
        if self.use_bias:
            blocks += tf.reshape(tf.cast(self.bias, dtype), (1, self.num_blocks, -1))
        return tf.cast(self._from_blocks(blocks), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        image_shape, _ = image_and_mask.check_image_and_mask_shapes(
            input_shape, type(self).__name__
        )
        self._block_layout(image_shape[1:])  # validates the sizes
        return (image_shape[0],) + self._response_shape(image_shape[1:])

    def _kernel_blocks(self):
        """The kernel as (P, V, units), in the linear algebra dtype."""
        kernel = tf.cast(self.kernel, linear_algebra_dtype(self.kernel.dtype))
        return tf.reshape(kernel, (self.num_blocks, self.block_entries, self.units))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "regularization": self.regularization,
                "trainable_regularization": self.trainable_regularization,
                "use_bias": self.use_bias,
                "activation": keras.activations.serialize(self.activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            }
        )
        return config
