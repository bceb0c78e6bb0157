"""Per-sample regularised least squares on the observed entries (paper eq. 10).

For a linear model ``y = W r + mu`` and one sample with observed entries ``O``,
the sparsity-aware response is

    r = (W_O^T W_O + lambda I)^-1 W_O^T (y_O - mu_O).

Every sample has its own mask, hence its own Gram matrix ``W_O^T W_O``.
`masked_least_squares` solves many such systems at once, for ``P`` independent
blocks (one block for `SparseDense`, one per spatial block for
`LocallyConnectedSparse2D/3D`), with two choices made for memory and speed:

* The Gram matrices are accumulated as ``mask @ (products of kernel columns)``
  over chunks of rows, so no ``(batch, D, units)`` temporary exists, and only the
  upper triangle of each symmetric Gram matrix is computed.
* The gradient is written by hand (`tf.custom_gradient`): the gradient of the
  Gram term is a sum of rank-2 updates, which needs only ``(batch, D)``
  temporaries, where automatic differentiation would keep ``(batch, D, units)``.

The systems are solved by Cholesky in float32 (float64 if the kernel is
float64), whatever the compute dtype of the calling layer.

Numerical floor: a Cholesky factorisation of a singular matrix silently gives
NaN. To keep every result finite, the matrix actually factorised is

    H = W_O^T W_O + (lambda + delta) I,
    delta = RELATIVE_FLOOR * trace(W_O^T W_O) / units + ABSOLUTE_FLOOR,

so an all-missing sample (``W_O^T W_O = 0``) gets ``r = 0`` exactly, and fewer
observed entries than units, or ``lambda = 0`` with a rank-deficient ``W_O``,
give the minimum-norm-like regularised solution instead of NaN. ``delta`` is
treated as a constant by the gradient.
"""

import numpy as np
import tensorflow as tf

__all__ = ["masked_least_squares", "masked_gram", "linear_algebra_dtype"]

RELATIVE_FLOOR = 1e-5
ABSOLUTE_FLOOR = 1e-6

# Upper bound on the number of elements of the temporary holding products of
# kernel columns for one chunk of rows: 2**24 floats = 64 MiB in float32.
_PRODUCTS_BUDGET = 1 << 24


def linear_algebra_dtype(dtype):
    """The dtype used for the Gram matrices and Cholesky: float32 or float64."""
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32


def masked_gram(kernel, observed):
    """Gram matrices of the observed rows of each block's kernel.

    Args:
        kernel: float tensor of shape (P, V, U): P blocks of V rows, U units.
        observed: float tensor of shape (B, P, V) holding 1 for observed rows
            and 0 for missing ones.

    Returns:
        Tensor of shape (B, P, U, U): ``kernel[p]^T diag(observed[b, p])
        kernel[p]`` for every sample b and block p.
    """
    num_blocks, num_rows, units = kernel.shape
    upper_rows, upper_cols = np.triu_indices(units)
    num_upper = len(upper_rows)
    # For entry (i, j) of a U x U matrix, the position of (min, max) in the
    # upper-triangle listing, to rebuild the full symmetric matrix.
    upper_position = np.zeros((units, units), dtype=np.int32)
    upper_position[upper_rows, upper_cols] = np.arange(num_upper)
    upper_position[upper_cols, upper_rows] = np.arange(num_upper)

    rows_per_chunk = max(1, _PRODUCTS_BUDGET // (num_blocks * num_upper))
    num_chunks = -(-num_rows // rows_per_chunk)
    observed_by_block = tf.transpose(observed, [1, 0, 2])  # (P, B, V)
    # Units first, so that the gathers below copy whole contiguous rows.
    kernel_by_unit = tf.transpose(kernel, [0, 2, 1])  # (P, U, V)
    # Static when known: the loop below must keep its variable's shape.
    batch_size = observed.shape[0] if observed.shape[0] is not None else tf.shape(observed)[0]

    def add_chunk(chunk, gram_upper):
        start = chunk * rows_per_chunk
        size = tf.minimum(rows_per_chunk, num_rows - start)
        kernel_rows = tf.slice(kernel_by_unit, [0, 0, start], [num_blocks, units, size])
        # (P, U(U+1)/2, chunk): products kernel[:, v, i] * kernel[:, v, j], i <= j.
        products = tf.gather(kernel_rows, upper_rows, axis=1) * tf.gather(
            kernel_rows, upper_cols, axis=1
        )
        mask_rows = tf.slice(
            observed_by_block, [0, 0, start], [num_blocks, batch_size, size]
        )
        return chunk + 1, gram_upper + tf.matmul(mask_rows, products, transpose_b=True)

    gram_upper = tf.zeros([num_blocks, batch_size, num_upper], kernel.dtype)
    # parallel_iterations=1 keeps a single chunk of products alive at a time.
    _, gram_upper = tf.while_loop(
        lambda chunk, _: chunk < num_chunks,
        add_chunk,
        (tf.constant(0), gram_upper),
        parallel_iterations=1,
    )
    gram = tf.gather(gram_upper, upper_position.reshape(-1), axis=2)
    gram = tf.reshape(gram, [num_blocks, batch_size, units, units])
    return tf.transpose(gram, [1, 0, 2, 3])  # (B, P, U, U)


def masked_least_squares(kernel, centered, observed, regularization):
    """Solves ``(K_O^T K_O + lambda I) r = K_O^T z_O`` per sample and block.

    Args:
        kernel: tensor of shape (P, V, U), the weights ``W`` of each block.
        centered: tensor of shape (B, P, V), ``y - mu`` at observed entries and
            exactly 0 at missing ones (use `tf.where`, so NaN never gets here).
        observed: tensor of shape (B, P, V), 1.0 where observed, 0.0 where
            missing. Not differentiated.
        regularization: scalar tensor, ``lambda >= 0``.

    Returns:
        Tensor of shape (B, P, U) with the responses ``r``, in the linear
        algebra dtype (float32, or float64 for a float64 kernel).
    """
    dtype = linear_algebra_dtype(kernel.dtype)
    kernel = tf.cast(kernel, dtype)
    centered = tf.cast(centered, dtype)
    observed = tf.stop_gradient(tf.cast(observed, dtype))
    regularization = tf.cast(regularization, dtype)
    units = kernel.shape[-1]

    @tf.custom_gradient
    def solve(kernel, centered, regularization):
        gram = masked_gram(kernel, observed)  # (B, P, U, U)
        trace = tf.linalg.trace(gram)  # (B, P)
        floor = RELATIVE_FLOOR * trace / units + ABSOLUTE_FLOOR
        diagonal = tf.maximum(regularization, 0.0) + floor
        system = gram + diagonal[..., None, None] * tf.eye(units, dtype=dtype)
        cholesky = tf.linalg.cholesky(system)
        rhs = tf.einsum("bpv,pvu->bpu", centered, kernel)
        response = tf.linalg.cholesky_solve(cholesky, rhs[..., None])[..., 0]

        def grad(upstream):
            # adjoint = H^-1 dL/dr. With r = H^-1 K^T z:
            #   dL/dz = K adjoint,
            #   dL/dK = z adjoint^T - M K (adjoint r^T + r adjoint^T),
            #   dL/dlambda = -sum(adjoint . r).
            adjoint = tf.linalg.cholesky_solve(cholesky, upstream[..., None])[..., 0]
            kernel_adjoint = tf.einsum("pvu,bpu->bpv", kernel, adjoint)
            kernel_response = tf.einsum("pvu,bpu->bpv", kernel, response)
            grad_kernel = tf.einsum(
                "bpv,bpu->pvu", centered - observed * kernel_response, adjoint
            ) - tf.einsum("bpv,bpu->pvu", observed * kernel_adjoint, response)
            grad_regularization = -tf.reduce_sum(adjoint * response)
            grad_regularization = tf.where(
                regularization >= 0.0, grad_regularization, 0.0
            )
            return grad_kernel, kernel_adjoint, grad_regularization

        return response, grad

    return solve(kernel, centered, regularization)
