"""LocallyConnectedSparse2D/3D: a SparseDense map per non-overlapping block."""

import math

import keras
import tensorflow as tf

from sparselayers.layers.base_sparse_linear import BaseSparseLinear

__all__ = ["LocallyConnectedSparse2D", "LocallyConnectedSparse3D"]


class LocallyConnectedSparse(BaseSparseLinear):
    """Base class of `LocallyConnectedSparse2D` and `LocallyConnectedSparse3D`.

    The spatial axes are cut into non-overlapping blocks of `block_size`; each
    block has its own kernel ``W_p`` (block_voxels * channels, units) and mean
    ``mu_p``, and its output is the `SparseDense` response computed on the
    block's own observed voxels (paper §3.4.1). All blocks are solved at once:
    there is no Python loop over blocks.

    Args:
        rank: number of spatial axes (2 or 3).
        units: positive int, the response size of each block.
        block_size: int or tuple of `rank` positive ints.
        Other arguments: as in `SparseDense`.
    """

    def __init__(self, rank, units, block_size, **kwargs):
        super().__init__(units, **kwargs)
        self.rank = rank
        if isinstance(block_size, int):
            block_size = (block_size,) * rank
        block_size = tuple(block_size)
        if len(block_size) != rank or not all(
            isinstance(size, int) and size > 0 for size in block_size
        ):
            raise ValueError(
                f"{type(self).__name__}: `block_size` must be a positive int or "
                f"a tuple of {rank} positive ints; received block_size={block_size}."
            )
        self.block_size = block_size

    def _block_layout(self, image_shape):
        image_shape = tuple(image_shape)
        if len(image_shape) != self.rank + 1:
            raise ValueError(
                f"{type(self).__name__} expects images of shape (batch, "
                f"{', '.join(['size'] * self.rank)}, channels); received image "
                f"shape (batch,) + {image_shape}."
            )
        spatial = image_shape[:-1]
        if any(
            size is not None and size % block for size, block in zip(spatial, self.block_size)
        ):
            raise ValueError(
                f"{type(self).__name__}: spatial size {spatial} is not a multiple "
                f"of block_size {self.block_size}."
            )
        if any(size is None for size in image_shape):
            return None, None
        grid = [size // block for size, block in zip(spatial, self.block_size)]
        return math.prod(grid), math.prod(self.block_size) * image_shape[-1]

    def _grid(self, image_shape):
        return tuple(
            None if size is None else size // block
            for size, block in zip(image_shape[:-1], self.block_size)
        )

    def _kernel_shape(self, num_blocks, block_entries):
        return (num_blocks, block_entries, self.units)

    def _bias_shape(self, num_blocks, block_entries):
        return (num_blocks, block_entries)

    def _response_shape(self, image_shape):
        return self._grid(tuple(image_shape)) + (self.units,)

    def _to_blocks(self, image):
        grid = self._grid(self.image_shape)
        channels = self.image_shape[-1]
        # (B, n1, b1, n2, b2, ..., C) -> (B, n1, n2, ..., b1, b2, ..., C)
        split = [-1]
        for count, size in zip(grid, self.block_size):
            split += [count, size]
        image = tf.reshape(image, split + [channels])
        grid_axes = [1 + 2 * axis for axis in range(self.rank)]
        block_axes = [2 + 2 * axis for axis in range(self.rank)]
        image = tf.transpose(image, [0] + grid_axes + block_axes + [2 * self.rank + 1])
        return tf.reshape(image, (-1, self.num_blocks, self.block_entries))

    def _from_blocks(self, blocks):
        grid = self._grid(self.image_shape)
        channels = self.image_shape[-1]
        blocks = tf.reshape(blocks, (-1,) + grid + self.block_size + (channels,))
        # Inverse of the transpose in `_to_blocks`.
        order = [0]
        for axis in range(self.rank):
            order += [1 + axis, 1 + self.rank + axis]
        blocks = tf.transpose(blocks, order + [2 * self.rank + 1])
        return tf.reshape(blocks, (-1,) + self.image_shape)

    def get_config(self):
        config = super().get_config()
        config["block_size"] = self.block_size
        return config


@keras.saving.register_keras_serializable(package="sparselayers")
class LocallyConnectedSparse2D(LocallyConnectedSparse):
    """Per-block sparse dense maps on images (batch, H, W, C).

    Output: (batch, H / bh, W / bw, units); block ``(i, j)`` is the `SparseDense`
    response of pixels ``[i*bh:(i+1)*bh, j*bw:(j+1)*bw, :]`` with its own kernel.
    `decode` maps the output back to (batch, H, W, C).

    Args:
        units: positive int, response size per block.
        block_size: int or (bh, bw); H and W must be multiples of it.
        regularization, trainable_regularization, use_bias, activation,
        initializers, regularizers, constraints: as in `SparseDense`.

    Weights: kernel (num_blocks, bh*bw*C, units), bias (num_blocks, bh*bw*C),
    blocks numbered in row-major order of the block grid.

    Example:

    >>> y = keras.Input((32, 32, 1)); mask = keras.Input((32, 32, 1))
    >>> codes = LocallyConnectedSparse2D(8, block_size=8)([y, mask])  # (None, 4, 4, 8)
    """

    def __init__(self, units, block_size, **kwargs):
        kwargs.pop("rank", None)
        super().__init__(2, units, block_size, **kwargs)


@keras.saving.register_keras_serializable(package="sparselayers")
class LocallyConnectedSparse3D(LocallyConnectedSparse):
    """Per-block sparse dense maps on volumes (batch, X, Y, Z, C).

    Output: (batch, X / bx, Y / by, Z / bz, units). A 64^3 single-channel volume
    with 16^3 blocks and 32 units has 64 blocks of 4096 voxels each.
    `decode` maps the output back to (batch, X, Y, Z, C).

    Args:
        units: positive int, response size per block.
        block_size: int or (bx, by, bz); the spatial sizes must be multiples.
        Other arguments: as in `SparseDense`.

    Example:

    >>> y = keras.Input((64, 64, 64, 1)); mask = keras.Input((64, 64, 64, 1))
    >>> codes = LocallyConnectedSparse3D(32, block_size=16)([y, mask])  # (None, 4, 4, 4, 32)
    """

    def __init__(self, units, block_size, **kwargs):
        kwargs.pop("rank", None)
        super().__init__(3, units, block_size, **kwargs)
