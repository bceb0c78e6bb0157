"""A sparse VAE's predictive uncertainty on a thick-slice volume's fine grid.

A thick-slice volume is restored on its fine grid (`imputation.restore_volume`):
no fine voxel is known exactly, each acquired slice being the tissue averaged
over the slice profile. The sparse VAE form (trained on thick-slice patches,
`training.as_sparse_vae_batches`) gives every fine voxel a predictive mean and
variance from the cuts through the acquisition axis (`view_moments.cut_moments`,
every row observed: its mask is its position relative to the slices). Then,
as the deterministic restoration does, the mean is made consistent with the
acquired slices (`imputation.consistent_with_slices`); the projection being
affine, ``Q f + c``, the variance becomes ``(Q * Q) @ variance``
(`slice_profile.projected_variance`): a voxel at a thin slice's centre is
nearly pinned down by it, one between slices is not. The standard deviation is
calibrated on the scan's own held-out slices degraded as the scan was acquired
(`calibration.fit_calibration`, which projects the same way) and multiplied
by the volume's `view_moments.averaging_factor` (the two orientations' mean
errs less than one), so the interval is about the fine-grid voxel.

Example:

>>> mean, std = restore_moments(model, slices, grid, calibration=calibration)
>>> for draw in draw_restored_volumes(model, slices, grid, 5, calibration):
...     analyse(draw)
"""

import numpy as np

from sparselayers.layers.image_and_mask import check_positive_int
from sparselayers.mri import imputation
from sparselayers.mri import slice_profile
from sparselayers.mri.view_moments import calibrate_variance
from sparselayers.mri.view_moments import cut_moments

__all__ = ["restore_moments", "draw_restored_volumes"]


def restore_moments(model, slices, grid, num_samples=10, batch_size=None, seed=0,
                    calibration=None, minimum=None, return_factor=False):
    """Posterior predictive mean and standard deviation of a thick-slice volume's fine grid.

    Args:
        model: a `SparseVAE` taking cuts, trained on thick-slice patches.
        slices: the normalised acquired slices, K along `grid.axis`.
        grid: the volume's `SliceGrid`.
        num_samples: posterior draws per cut.
        batch_size: cuts per call (None: see `uncertainty.sample_volume`).
        seed: of the draws.
        calibration: a `calibration.Calibration`, or None (the model's std).
        minimum: as `imputation.restore_volume`'s (applies to the mean).
        return_factor: also return the views' `view_moments.averaging_factor`
            applied with the calibration (1.0 without one).

    Returns:
        (mean, std), float32 of the fine grid's shape (`grid.fine_shape`);
        the profile applied to `mean` reproduces `slices` (up to the
        clipping at `minimum`). With `return_factor`, (mean, std, factor).
    """
    moved, upsampled, row_mask, weights = imputation.fine_columns(slices, grid)
    mean, variance, views_gap = cut_moments(model, upsampled, row_mask, num_samples, batch_size,
                                            seed, keep_observed=False)
    del upsampled
    factor = calibrate_variance(variance, mean, views_gap, True, calibration)
    del views_gap
    mean = imputation.consistent_with_slices(mean, moved, weights, minimum)
    variance = slice_profile.projected_variance(variance, weights)
    std = np.sqrt(variance, out=variance)
    result = (np.ascontiguousarray(np.moveaxis(mean, 0, grid.axis)),
              np.ascontiguousarray(np.moveaxis(std, 0, grid.axis)))
    return result + (factor,) if return_factor else result


def draw_restored_volumes(model, slices, grid, draws, calibration=None, batch_size=None, seed=0,
                          minimum=None):
    """Multiple imputations of a thick-slice volume's fine grid: a generator of volumes.

    Draw k: for every cut one posterior draw of the latent, the views' mean
    of the decoder's means, plus Gaussian noise of the views' likelihood
    variance (calibrated as in `restore_moments`), then made consistent with the
    acquired slices (`imputation.consistent_with_slices`): each draw's
    slices under the profile are the acquired ones, and its variance about
    the mean is `restore_moments`' (before calibration's multipliers).

    Args:
        draws: K >= 1.
        calibration, batch_size, minimum: as `restore_moments`'.
        seed: the draws are a function of it.

    Yields:
        float32 volumes of the fine grid's shape.
    """
    draws = check_positive_int(draws, "draws")
    moved, upsampled, row_mask, weights = imputation.fine_columns(slices, grid)
    for index in range(draws):
        rng = np.random.default_rng([seed, index])
        mean, variance, views_gap = cut_moments(model, upsampled, row_mask, 1, batch_size,
                                                int(rng.integers(2**31)), keep_observed=False)
        calibrate_variance(variance, mean, views_gap, True, calibration)
        del views_gap
        np.sqrt(variance, out=variance)
        variance *= rng.standard_normal(variance.shape, dtype=np.float32)   # the noise
        mean += variance
        del variance
        draw = imputation.consistent_with_slices(mean, moved, weights, minimum)
        del mean
        yield np.ascontiguousarray(np.moveaxis(draw, 0, grid.axis))

