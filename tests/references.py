"""Independent NumPy references (float64 loops) for the layers' formulas."""

import itertools

import numpy as np

from sparselayers.layers.masked_least_squares import ABSOLUTE_FLOOR
from sparselayers.layers.masked_least_squares import RELATIVE_FLOOR


def broadcast_observed(image, mask):
    return np.broadcast_to(np.asarray(mask, np.float64) > 0.5, image.shape)


def sparse_dense(image, mask, kernel, bias, regularization):
    """Paper eq. 10 per sample with np.linalg.solve; the documented floor."""
    image = np.asarray(image, np.float64)
    observed = broadcast_observed(image, mask).reshape(len(image), -1)
    flat = image.reshape(len(image), -1)
    kernel = np.asarray(kernel, np.float64)
    bias = np.zeros(kernel.shape[0]) if bias is None else np.asarray(bias, np.float64)
    units = kernel.shape[1]
    out = np.zeros((len(image), units))
    for sample in range(len(image)):
        rows = observed[sample]
        kernel_observed = kernel[rows]
        gram = kernel_observed.T @ kernel_observed
        floor = RELATIVE_FLOOR * np.trace(gram) / units + ABSOLUTE_FLOOR
        system = gram + (regularization + floor) * np.eye(units)
        rhs = kernel_observed.T @ (flat[sample, rows] - bias[rows])
        out[sample] = np.linalg.solve(system, rhs)
    return out


def weighted_conv(image, mask, kernel, bias, strides, padding, dilation):
    """Paper eqs. 11-12 with explicit loops over output positions."""
    image = np.asarray(image, np.float64)
    mask = np.asarray(mask, np.float64) > 0.5
    kernel = np.asarray(kernel, np.float64)
    rank = image.ndim - 2
    spatial = image.shape[1:-1]
    ksize = kernel.shape[:rank]
    effective = [(k - 1) * d + 1 for k, d in zip(ksize, dilation)]
    if padding == "valid":
        out_size = [(n - e) // s + 1 for n, e, s in zip(spatial, effective, strides)]
        pad_before = [0] * rank
    else:
        out_size = [-(-n // s) for n, s in zip(spatial, strides)]
        pad_total = [
            max((o - 1) * s + e - n, 0)
            for o, s, e, n in zip(out_size, strides, effective, spatial)
        ]
        pad_before = [p // 2 for p in pad_total]
    batch, filters = image.shape[0], kernel.shape[-1]
    mask_channels = mask.shape[-1]
    window_size = np.prod(ksize) * mask_channels
    out = np.zeros([batch] + out_size + [filters])
    new_mask = np.zeros([batch] + out_size + [1])
    for b in range(batch):
        for position in itertools.product(*[range(o) for o in out_size]):
            total = np.zeros(filters)
            count = 0.0
            for offset in itertools.product(*[range(k) for k in ksize]):
                source = [
                    p * s + o * d - pb
                    for p, s, o, d, pb in zip(position, strides, offset, dilation, pad_before)
                ]
                if any(i < 0 or i >= n for i, n in zip(source, spatial)):
                    continue  # padding: unobserved
                m = mask[(b, *source)]  # (mask_channels,)
                count += m.sum()
                x = image[(b, *source)]
                observed = np.broadcast_to(m, x.shape)
                x = np.where(observed, x, 0.0)
                total += x @ kernel[offset]
            if count > 0:
                out[(b, *position)] = window_size / count * total + (0 if bias is None else bias)
                new_mask[(b, *position)] = 1.0
    return out, new_mask


def locally_connected_sparse(image, mask, kernel, bias, block_size, regularization):
    """Per-block SparseDense with explicit loops over blocks (row-major grid)."""
    image = np.asarray(image, np.float64)
    observed = broadcast_observed(image, mask)
    spatial = image.shape[1:-1]
    grid = [n // b for n, b in zip(spatial, block_size)]
    units = kernel.shape[-1]
    out = np.zeros([len(image)] + grid + [units])
    for block, index in enumerate(itertools.product(*[range(g) for g in grid])):
        window = tuple(slice(i * b, (i + 1) * b) for i, b in zip(index, block_size))
        block_image = image[(slice(None),) + window]
        block_mask = observed[(slice(None),) + window]
        block_bias = None if bias is None else bias[block]
        out[(slice(None),) + tuple(index)] = sparse_dense(
            block_image, block_mask, kernel[block], block_bias, regularization
        )
    return out
