"""Image quality metrics for imputation: SSIM, PSNR, MSE on missing entries."""

import numpy as np
import tensorflow as tf


def _with_channel(images):
    images = np.asarray(images, np.float32)
    return images[..., None] if images.ndim == 3 else images


def ssim(a, b, data_range=1.0):
    """Structural similarity of each pair of images, over the whole image.

    Uses `tf.image.ssim` with the standard settings of Wang et al. (2004): an
    11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, so
    C1 = (0.01 * data_range)^2 and C2 = (0.03 * data_range)^2; the SSIM map over
    every valid window position of the whole image (not only the missing
    region) is averaged, and channels are averaged.

    Args:
        a, b: images (n, H, W) or (n, H, W, C), H and W >= 11.
        data_range: the value range of the images (1.0 for [0, 1]).

    Returns:
        float array (n,).
    """
    a, b = _with_channel(a), _with_channel(b)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ: {a.shape} and {b.shape}.")
    return tf.image.ssim(
        tf.constant(a), tf.constant(b), max_val=data_range, filter_size=11,
        filter_sigma=1.5, k1=0.01, k2=0.03,
    ).numpy()


def psnr(a, b, data_range=1.0):
    """Peak signal-to-noise ratio of each pair of images, in dB, (n,)."""
    a, b = _with_channel(a), _with_channel(b)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} and {b.shape}.")
    return tf.image.psnr(tf.constant(a), tf.constant(b), max_val=data_range).numpy()


def masked_mse(a, b, mask):
    """Mean squared error over the missing entries (mask == 0) only.

    Args:
        a, b: images of one shape. mask: 1 where observed, broadcastable.

    Returns:
        float; NaN-free: 0.0 when nothing is missing.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    missing = np.broadcast_to(np.asarray(mask) <= 0.5, a.shape)
    if not missing.any():
        return 0.0
    return float(np.mean((a[missing] - b[missing]) ** 2))
