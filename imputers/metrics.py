"""Image quality metrics for imputation: SSIM, PSNR, MSE on missing entries."""

import numpy as np
import tensorflow as tf

__all__ = ["ssim", "psnr", "masked_mse"]


def _with_channel(images):
    images = np.asarray(images, np.float32)
    return images[..., None] if images.ndim == 3 else images


def _check_data_range(data_range, caller):
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"{caller}: data_range must be finite and > 0; received {data_range}.")


def ssim(a, b, data_range=1.0):
    """Structural similarity of each pair of images, over the whole image.

    Uses `tf.image.ssim` with the standard settings of Wang et al. (2004): an
    11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, so
    C1 = (0.01 * data_range)^2 and C2 = (0.03 * data_range)^2; the SSIM map over
    every valid window position of the whole image (not only the missing
    region) is averaged, and channels are averaged.

    Args:
        a, b: images (n, H, W) or (n, H, W, C), H and W >= 11.
        data_range: the value range of the images (1.0 for [0, 1]), > 0.

    Returns:
        float array (n,).
    """
    _check_data_range(data_range, "ssim")
    given_shape = np.shape(a)
    a, b = _with_channel(a), _with_channel(b)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ: {a.shape} and {b.shape}.")
    if a.ndim != 4 or min(a.shape[1:3]) < 11:
        raise ValueError(
            f"ssim needs images (n, H, W) or (n, H, W, C) with H and W >= 11 (its Gaussian "
            f"window is 11 x 11); received shape {given_shape}.")
    return tf.image.ssim(
        tf.constant(a), tf.constant(b), max_val=data_range, filter_size=11,
        filter_sigma=1.5, k1=0.01, k2=0.03,
    ).numpy()


def psnr(a, b, data_range=1.0):
    """Peak signal-to-noise ratio of each pair of images, in dB, (n,).

    10 log10(data_range^2 / MSE): +inf for identical images (MSE 0), as in
    `tf.image.psnr` and scikit-image; `data_range` must be finite and > 0.
    """
    _check_data_range(data_range, "psnr")
    a, b = _with_channel(a), _with_channel(b)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} and {b.shape}.")
    return tf.image.psnr(tf.constant(a), tf.constant(b), max_val=data_range).numpy()


def masked_mse(a, b, mask):
    """Mean squared error over the missing entries (mask == 0) only.

    Args:
        a, b: images of one shape. mask: 1 where observed (> 0.5),
            broadcastable; anything else, NaN included, is missing, as
            everywhere in the package.

    Returns:
        float; NaN-free: 0.0 when nothing is missing.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"masked_mse: shapes differ: {a.shape} and {b.shape}.")
    missing = np.broadcast_to(~(np.asarray(mask) > 0.5), a.shape)
    if not missing.any():
        return 0.0
    return float(np.mean((a[missing] - b[missing]) ** 2))
