"""A sparse VAE's predictive uncertainty on a volume: calibrated std and draws.

For each missing voxel the model gives a posterior predictive: the decoder's
mean over posterior draws of the latent, and a standard deviation made of
the draws' spread and the likelihood's own per-voxel noise
(`SparseVAE.predictive_moments`), both averaged over the voxel's four views
(the two cuts through it along the acquisition axis, each also mirrored,
as `imputation.impute_volume`).

The standard deviation is calibrated on the scan's own held-out acquired
slices (`calibration`: `fit_calibration` gives a `Calibration`, a scale and
per-level interval multipliers; both are re-exported here, with
`summary_line`, `interval_coverage` and `LEVELS`). A volume's mean averages
two orientations of cuts while a held-out slice is filled in by one: the
calibrated std is multiplied by the volume's `averaging_factor` (in
[0.5, 1]), measured on the volume from how much the two orientations' means
differ (no truth needed; 0.97-0.99 on real brains). The fine grid of a
thick-slice file: `restored_uncertainty`. `benchmarks/mri_cohort.py`
measures the coverage on held-out brains. `draw_volumes` gives multiple
imputations from the calibrated predictive, one volume at a time.

Example:

>>> calibration = fit_calibration(model, held_out_stack, sampling)
>>> mean, std = sample_volume(model, scaled, acquisition, calibration=calibration)
>>> low = mean - calibration.multiplier(0.9) * std     # 90% interval
>>> for draw in draw_volumes(model, scaled, acquisition, 5, calibration):
...     analyse(draw)
"""

import numpy as np

from sparselayers.layers.image_and_mask import check_positive_int
from sparselayers.mri.calibration import LEVELS  # noqa: F401 (re-exported)
from sparselayers.mri.calibration import Calibration  # noqa: F401 (re-exported)
from sparselayers.mri.calibration import fit_calibration  # noqa: F401 (re-exported)
from sparselayers.mri.calibration import interval_coverage  # noqa: F401 (re-exported)
from sparselayers.mri.calibration import standardised_errors  # noqa: F401 (re-exported)
from sparselayers.mri.calibration import summary_line  # noqa: F401 (re-exported)
from sparselayers.mri.view_moments import averaging_factor  # noqa: F401 (documented here)
from sparselayers.mri.view_moments import calibrate_variance
from sparselayers.mri.view_moments import cut_moments

__all__ = ["Calibration", "fit_calibration", "sample_volume", "draw_volumes", "cut_moments",
           "averaging_factor", "interval_coverage", "summary_line", "LEVELS"]


def _volume_moments(model, scaled, acquisition, num_samples, batch_size, seed, calibration):
    """(moved volume, mean, calibrated variance, averaging factor), the acquisition
    axis first; see `sample_volume`."""
    scaled = np.asarray(scaled, np.float32)
    acquisition.check_shape(scaled.shape)
    moved = np.moveaxis(scaled, acquisition.axis, 0)   # (A, P, Q)
    mean, variance, views_gap = cut_moments(model, moved,
                                            acquisition.acquired.astype(np.float32),
                                            num_samples, batch_size, seed)
    factor = calibrate_variance(variance, mean, views_gap,
                                ~acquisition.acquired[:, None, None], calibration)
    return moved, mean, variance, factor


def sample_volume(model, scaled, acquisition, num_samples=10, batch_size=None, seed=0,
                  calibration=None, return_factor=False):
    """Posterior predictive mean and standard deviation of a volume's missing voxels.

    Each cut through the acquisition axis (both orientations, each also
    mirrored) gets the model's predictive moments from `num_samples`
    posterior draws (`SparseVAE.predictive_moments`); per voxel, the mean
    of the four means, and the square root of the mean of the four
    variances, times ``calibration.scale`` and the volume's
    `averaging_factor` if a calibration is given (the mean of two
    orientations errs less than one; measured on the volume itself).
    Memory: the volume, three accumulators, and one batch of cuts' draws.

    Args:
        model: a `SparseVAE` taking cuts (``conv-interp-residual-vae``).
        scaled: (X, Y, Z) normalised volume; acquisition: its `Acquisition`.
        num_samples: posterior draws per cut.
        batch_size: cuts per call; None bounds one call's widest activation
            (times `num_samples`) by `imputation.ACTIVATION_VALUES_PER_CALL`.
        seed: of the draws.
        calibration: a `Calibration` (`fit_calibration`), or None for the
            model's own, uncalibrated std.
        return_factor: also return the averaging factor applied (1.0
            without a calibration).

    Returns:
        (mean, std), float32 (X, Y, Z) each; acquired voxels are exact in
        `mean` and 0 in `std`. With `return_factor`, (mean, std, factor).
    """
    moved, mean, variance, factor = _volume_moments(model, scaled, acquisition, num_samples,
                                                    batch_size, seed, calibration)
    acquired = acquisition.acquired[:, None, None]
    std = np.sqrt(variance, out=variance)
    mean = np.where(acquired, moved, mean)
    std = np.where(acquired, np.float32(0), std)
    result = (np.ascontiguousarray(np.moveaxis(mean, 0, acquisition.axis)),
              np.ascontiguousarray(np.moveaxis(std, 0, acquisition.axis)))
    return result + (factor,) if return_factor else result


def draw_volumes(model, scaled, acquisition, draws, calibration=None, batch_size=None, seed=0):
    """Multiple imputations of a volume: a generator of `draws` volumes.

    Draw k: for every cut one posterior draw x_k of the latent, the mean
    of the decoder's means f(x_k) over the voxel's four views, plus
    Gaussian noise of the views' mean likelihood variance (calibrated as
    in `sample_volume`: ``calibration.scale`` times the draw's own
    `averaging_factor`). The draws are independent given the volume;
    their mean converges to `sample_volume`'s mean. Memory: the volume,
    three accumulators and the draw being yielded (use each before the
    next).

    Args:
        draws: K >= 1.
        calibration, batch_size: as `sample_volume`'s.
        seed: the draws are a function of it.

    Yields:
        float32 (X, Y, Z) volumes, acquired voxels exactly as in `scaled`.
    """
    draws = check_positive_int(draws, "draws")
    acquired = acquisition.acquired[:, None, None]
    for index in range(draws):
        rng = np.random.default_rng([seed, index])
        moved, mean, variance, _ = _volume_moments(model, scaled, acquisition, 1, batch_size,
                                                   int(rng.integers(2**31)), calibration)
        noise = rng.standard_normal(moved.shape, dtype=np.float32)
        np.sqrt(variance, out=variance)
        variance *= noise          # now the noise itself
        del noise
        mean += variance
        del variance
        np.copyto(mean, moved, where=np.broadcast_to(acquired, mean.shape))
        yield np.ascontiguousarray(np.moveaxis(mean, 0, acquisition.axis))


