"""Seeded generators of observation masks (1 = observed, 0 = missing).

Every function takes ``shape = (num_samples, *spatial_shape)`` and returns a
float32 NumPy array of that shape; append a channel axis with ``mask[..., None]``
to use it with images of shape (num_samples, *spatial_shape, 1).
"""

import numpy as np

__all__ = ["random_missing", "missing_patch", "every_nth_slice"]


def _check_shape(shape, function):
    shape = tuple(int(size) for size in shape)
    if len(shape) < 2 or any(size <= 0 for size in shape):
        raise ValueError(
            f"{function}: `shape` must be (num_samples, *spatial_shape) with "
            f"positive sizes; received shape={shape}."
        )
    return shape


def random_missing(shape, missing_fraction, seed=None):
    """Removes a given fraction of the entries of each sample, uniformly.

    Each sample has exactly ``round(missing_fraction * prod(spatial_shape))``
    missing entries, at places drawn independently per sample.

    Args:
        shape: (num_samples, *spatial_shape).
        missing_fraction: float in [0, 1].
        seed: int or None, for `np.random.default_rng`.

    Returns:
        float32 array of `shape`.

    Example:

    >>> mask = random_missing((100, 28, 28), 0.9, seed=0)   # 90% missing
    """
    shape = _check_shape(shape, "random_missing")
    if not 0.0 <= missing_fraction <= 1.0:
        raise ValueError(
            f"random_missing: missing_fraction must be in [0, 1]; received "
            f"{missing_fraction}."
        )
    rng = np.random.default_rng(seed)
    entries = int(np.prod(shape[1:]))
    num_missing = int(round(missing_fraction * entries))
    # Per sample, the `num_missing` entries of lowest random rank go missing.
    ranks = rng.random((shape[0], entries)).argsort(axis=1).argsort(axis=1)
    return (ranks >= num_missing).astype(np.float32).reshape(shape)


def missing_patch(shape, patch_size, seed=None):
    """Removes a square (2-D) or cubic (3-D) patch at a uniform random place.

    Args:
        shape: (num_samples, *spatial_shape).
        patch_size: int, or one int per spatial axis; at most the image size.
        seed: int or None.

    Returns:
        float32 array of `shape`, 0 inside each sample's patch.

    Example:

    >>> mask = missing_patch((100, 28, 28), 13, seed=0)   # 13x13 hole
    """
    shape = _check_shape(shape, "missing_patch")
    spatial = shape[1:]
    sizes = (patch_size,) * len(spatial) if np.isscalar(patch_size) else tuple(patch_size)
    if any(isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer))
           for size in sizes):
        raise ValueError(f"missing_patch: patch_size must be an int or one int per spatial "
                         f"axis; received {patch_size!r}.")
    patch_size = tuple(int(size) for size in sizes)
    if len(patch_size) != len(spatial) or any(
        not 0 < size <= limit for size, limit in zip(patch_size, spatial)
    ):
        raise ValueError(
            f"missing_patch: patch_size {patch_size} must have one positive size "
            f"per spatial axis, each at most the image size {spatial}."
        )
    rng = np.random.default_rng(seed)
    mask = np.ones(shape, np.float32)
    for sample in range(shape[0]):
        corner = [rng.integers(0, limit - size + 1) for size, limit in zip(patch_size, spatial)]
        window = tuple(slice(start, start + size) for start, size in zip(corner, patch_size))
        mask[(sample,) + window] = 0.0
    return mask


def every_nth_slice(shape, n=6, axis=-1, offset=None, seed=None):
    """Keeps every n-th slice along an axis (the sparse MRI protocol of §4.4).

    Args:
        shape: (num_samples, *spatial_shape).
        n: positive int; slices ``offset, offset + n, ...`` are observed, so a
            fraction ``(n - 1) / n`` is missing (83% for n = 6).
        axis: spatial axis along which slices are taken, counted in `shape`
            (1 is the first spatial axis; negative values count from the end).
        offset: int in [0, n), the first observed slice; None draws one per
            sample uniformly with `seed`.
        seed: int or None, used when `offset` is None.

    Returns:
        float32 array of `shape`.

    Example:

    >>> mask = every_nth_slice((4, 64, 64, 64), n=6, axis=1, seed=0)
    """
    shape = _check_shape(shape, "every_nth_slice")
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"every_nth_slice: n must be a positive int; received n={n!r}.")
    ndim = len(shape)
    if not -ndim <= axis < ndim or axis % ndim == 0:
        raise ValueError(
            f"every_nth_slice: axis must name a spatial axis of shape {shape} "
            f"(1..{ndim - 1} or negative); received axis={axis}."
        )
    axis = axis % ndim
    if offset is not None and not 0 <= offset < n:
        raise ValueError(f"every_nth_slice: offset must be in [0, {n}); received {offset}.")
    rng = np.random.default_rng(seed)
    offsets = (
        rng.integers(0, n, size=shape[0]) if offset is None else np.full(shape[0], offset)
    )
    positions = np.arange(shape[axis])
    # (num_samples, length): observed slices per sample, then broadcast.
    kept = (positions[None, :] % n) == offsets[:, None]
    broadcast_shape = [shape[0]] + [1] * (ndim - 1)
    broadcast_shape[axis] = shape[axis]
    return np.broadcast_to(kept.reshape(broadcast_shape), shape).astype(np.float32)
