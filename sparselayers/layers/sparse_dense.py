"""SparseDense: a fully connected layer for partially observed inputs (eq. 10)."""

import math

import keras
import tensorflow as tf

from sparselayers.layers.base_sparse_linear import BaseSparseLinear

__all__ = ["SparseDense"]


@keras.saving.register_keras_serializable(package="sparselayers")
class SparseDense(BaseSparseLinear):
    """Fully connected layer by a masked, regularised pseudo-inverse.

    The layer holds a linear model ``y = W r + mu`` of its input ``y``
    (``D = prod(y.shape[1:])`` entries). For each sample, with ``O`` its own
    observed entries, the output is the regularised least-squares response
    (paper eq. 10, with the ridge term of eq. 15):

        r = (W_O^T W_O + lambda I)^-1 W_O^T (y_O - mu_O)

    followed by `activation`. Missing entries never enter the computation, so
    they may hold anything, NaN and Inf included. A sample with no observed
    entry gives ``r = 0``. The systems are solved by Cholesky in float32 (also
    under ``mixed_float16``), with a small floor added to ``lambda`` so that
    rank-deficient cases (fewer observed entries than units, ``lambda = 0``)
    stay finite: see `sparselayers.layers.masked_least_squares`.

    `decode(r)` returns ``W r + mu`` with the input's shape, so one layer is
    the encoder and the decoder of the linear subspace model (eqs. 13-15).

    Args:
        units: positive int, the size of the response ``r``.
        regularization: float >= 0, ``lambda``.
        trainable_regularization: bool; if True, ``lambda`` is learned (kept
            non-negative by a `NonNeg` constraint).
        use_bias: bool; if True the model has the pixel-space mean ``mu``.
        activation: activation applied to ``r`` (default: none).
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, kernel_constraint, bias_constraint: as in
            `keras.layers.Dense`, for ``W`` and ``mu``.

    Call arguments:
        inputs: ``[y, mask]``; ``y`` of shape (batch, *dims), ``mask`` of the
            same shape or with 1 channel (last axis), 1 where observed
            (bool, or float > 0.5).

    Returns:
        Tensor of shape (batch, units).

    Weights:
        kernel: (D, units), ``W``. bias: (D,), ``mu``. regularization: scalar
        ``lambda``.

    Example:

    >>> y = keras.Input((28, 28, 1), name="image")
    >>> mask = keras.Input((28, 28, 1), name="mask")
    >>> code = SparseDense(10)([y, mask])           # (None, 10)
    """

    def _block_layout(self, image_shape):
        return 1, math.prod(image_shape)

    def _kernel_shape(self, num_blocks, block_entries):
        return (block_entries, self.units)

    def _bias_shape(self, num_blocks, block_entries):
        return (block_entries,)

    def _response_shape(self, image_shape):
        return (self.units,)

    def _to_blocks(self, image):
        return tf.reshape(image, (-1, 1, self.block_entries))

    def _from_blocks(self, blocks):
        return tf.reshape(blocks, (-1,) + self.image_shape)
