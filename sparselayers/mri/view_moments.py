"""The predictive moments of a volume's voxels from their four views, and the
factor for averaging two orientations.

A sparse VAE fills in a volume through its cuts along the acquisition axis:
both orientations of cuts (along either in-plane axis), each also mirrored.
`cut_moments` gives every voxel the mean of the four views' predictive means,
the mean of their variances, and how much the two orientations disagree;
`averaging_factor` turns that disagreement into the factor by which the mean
of two orientations errs less than one (`calibration.fit_calibration`
calibrates one orientation). Used by `uncertainty` (missing slices) and
`restored_uncertainty` (thick slices).

Example:

>>> mean, variance, views_gap = cut_moments(model, moved, row_mask, num_samples=4)
>>> factor = averaging_factor(scale**2 * variance, views_gap, unknown & (mean > 0.1))
"""

import numpy as np

from sparselayers.layers.image_and_mask import check_positive_int
from sparselayers.models.sparse_vae_imputation import widest_activation
from sparselayers.mri.imputation import ACTIVATION_VALUES_PER_CALL
from sparselayers.mri.training import FOREGROUND

__all__ = ["cut_moments", "averaging_factor", "calibrate_variance", "views_moments"]


def views_moments(model, images, masks, num_samples, rng, batch_size=None,
                  keep_observed=True):
    """(mean, variance) of a batch of cuts (b, H, W): the cut and its mirror, averaged."""
    total_mean, total_variance = 0.0, 0.0
    for flip in (slice(None), slice(None, None, -1)):
        mean, std = model.predictive_moments(images[:, :, flip, None], masks[:, :, flip, None],
                                             num_samples, batch_size=batch_size,
                                             seed=int(rng.integers(2**31)),
                                             keep_observed=keep_observed)
        total_mean = total_mean + mean[:, :, flip, 0]
        total_variance = total_variance + std[:, :, flip, 0] ** 2
    return total_mean / 2, total_variance / 2


def cut_moments(model, moved, row_mask, num_samples, batch_size=None, seed=0,
                keep_observed=True):
    """(mean, variance, views_gap) of every voxel of `moved` (A, P, Q) from its four views.

    The cuts through axis 0, both orientations, each also mirrored (as
    `imputation.impute_volume`); `row_mask` (A,) is each row's mask value.
    `keep_observed`: see `SparseVAE.predictive_moments`. ``views_gap`` is
    ``((mean_P - mean_Q) / 2)**2``, the squared half-difference of the two
    orientations' means (each averaged with its mirror), which
    `averaging_factor` reads. Memory: three accumulators and one batch of
    cuts' draws.
    """
    if not hasattr(model, "predictive_moments"):
        raise ValueError(f"sample_volume needs a SparseVAE (posterior draws); received "
                         f"{type(model).__name__}: use impute_volume.")
    num_samples = check_positive_int(num_samples, "num_samples")
    if batch_size is None:
        largest_cut = (moved.shape[0], max(moved.shape[1:]), 1)
        batch_size = max(1, ACTIVATION_VALUES_PER_CALL
                         // (num_samples * widest_activation(model, largest_cut)))
    batch_size = check_positive_int(batch_size, "batch_size")
    orientation_means = [np.zeros(moved.shape, np.float32) for _ in range(2)]
    variance_total = np.zeros(moved.shape, np.float32)
    rng = np.random.default_rng(seed)
    for cut_axis, mean_total in zip((1, 2), orientation_means):
        for start in range(0, moved.shape[cut_axis], batch_size):
            index = [slice(None)] * 3
            index[cut_axis] = slice(start, min(start + batch_size, moved.shape[cut_axis]))
            cuts = np.moveaxis(moved[tuple(index)], cut_axis, 0)   # (b, A, other)
            masks = np.broadcast_to(row_mask[None, :, None], cuts.shape).astype(np.float32)
            images = np.where(masks > 0.5, cuts, 0.0).astype(np.float32)
            mean, variance = views_moments(model, images, masks, num_samples, rng, len(cuts),
                                           keep_observed)
            mean_total[tuple(index)] = np.moveaxis(mean, 0, cut_axis)
            variance_total[tuple(index)] += np.moveaxis(variance, 0, cut_axis)
    mean_p, views_gap = orientation_means
    views_gap -= mean_p               # (mean_Q - mean_P)
    views_gap *= 0.5
    mean_p += views_gap               # the views' mean, (mean_P + mean_Q) / 2
    np.square(views_gap, out=views_gap)
    variance_total *= 0.5
    return mean_p, variance_total, views_gap


def averaging_factor(variance, views_gap, region):
    """The factor from one orientation's calibrated std to the two orientations' average's.

    The calibration (`fit_calibration`) scores held-out slices filled in by
    one orientation of cuts (with its mirror); a volume's mean averages the
    two orientations, m = (m_P + m_Q) / 2, whose error is smaller when
    theirs are not fully correlated. Per voxel, exactly,
    ``((e_P + e_Q) / 2)**2 = (e_P**2 + e_Q**2) / 2 - ((m_P - m_Q) / 2)**2``:
    the calibrated variance predicts the first term, the second is seen
    on the volume itself without its truth. Over `region`:

        factor**2 = 1 - sum(views_gap) / sum(variance)

    with factor**2 clipped to [0.25, 1] (factor 1 when `region` is empty).

    Args:
        variance: the calibrated predictive variance of one view (scale**2
            times `cut_moments`' variance).
        views_gap: `cut_moments`' ``views_gap``, same shape.
        region: bool mask of the voxels to pool (the unknown ones in the
            head).

    Returns:
        A float in [0.5, 1]: multiply the std by it.
    """
    total = float(np.sum(variance[region], dtype=np.float64))
    if not total > 0:
        return 1.0
    shrink = 1.0 - float(np.sum(views_gap[region], dtype=np.float64)) / total
    return float(np.sqrt(min(max(shrink, 0.25), 1.0)))


def calibrate_variance(variance, mean, views_gap, unknown, calibration):
    """`variance` times ``(calibration.scale * averaging_factor)**2``, in place; the factor.

    `unknown`: bool, broadcastable to `variance`, the voxels to predict;
    the factor pools those whose mean is in the head (above
    `training.FOREGROUND`). None `calibration`: unchanged, factor 1.
    """
    if calibration is None:
        return 1.0
    variance *= np.float32(calibration.scale ** 2)
    factor = averaging_factor(variance, views_gap, unknown & (mean > FOREGROUND))
    variance *= np.float32(factor ** 2)
    return factor
