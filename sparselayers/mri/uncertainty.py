"""A sparse VAE's predictive uncertainty on a volume: calibrated std and draws.

For each missing voxel the model gives a posterior predictive: the decoder's
mean over posterior draws of the latent, and a standard deviation made of
the draws' spread and the likelihood's own per-voxel noise
(`SparseVAE.predictive_moments`), both averaged over the voxel's four views
(the two cuts through it along the acquisition axis, each also mirrored,
as `imputation.impute_volume`).

No ground truth exists for a clinical scan's missing slices, so the
standard deviation is calibrated on the scan's own held-out acquired slices
(`self_validation.held_out_slices`, never trained on), degraded as the scan
was acquired (`self_validation.degrade`) and filled in by the same model:
on their hidden voxels in the head, the standardised errors
z = (truth - mean) / std give

* `Calibration.scale`, the root mean square of z: the model's std times it
  is the predictive standard deviation written to ``<name>_std.nii.gz``;
* `Calibration.multipliers`: per level p (`LEVELS`), the p-quantile of
  |z| / scale, so that ``mean +- multiplier(p) * std`` is the central p
  predictive interval (a split-conformal interval: its coverage on held-out
  data is p by construction, whatever the errors' shape; a Gaussian would
  give 1.645 at p = 0.9).

A volume's mean averages two orientations of cuts while a held-out slice
is filled in by one: the calibrated std is multiplied by the volume's
`averaging_factor` (in [0.5, 1]), measured on the volume from how much the
two orientations' means differ (no truth needed; 0.97-0.99 on real brains).

This assumes that errors in-plane and through-plane are alike (the premise
of the self-supervised training itself); thick slices keep less fine detail
in-plane than the tissue has, which the scale corrects for (`fit_calibration`;
the fine grid's std: `restored_uncertainty`). `benchmarks/mri_cohort.py`
measures the coverage on held-out brains. `draw_volumes` gives multiple
imputations from the calibrated predictive, one volume at a time.

Example:

>>> calibration = fit_calibration(model, held_out_stack, sampling)
>>> mean, std = sample_volume(model, scaled, acquisition, calibration=calibration)
>>> low = mean - calibration.multiplier(0.9) * std     # 90% interval
>>> for draw in draw_volumes(model, scaled, acquisition, 5, calibration):
...     analyse(draw)
"""

from statistics import NormalDist

import numpy as np

from sparselayers.layers.image_and_mask import check_positive_int
from sparselayers.mri import slice_profile
from sparselayers.mri.self_validation import degrade
from sparselayers.mri.training import FOREGROUND
from sparselayers.mri.training import row_sampling
from sparselayers.mri.view_moments import averaging_factor  # noqa: F401 (documented here)
from sparselayers.mri.view_moments import calibrate_variance
from sparselayers.mri.view_moments import cut_moments
from sparselayers.mri.view_moments import views_moments

__all__ = ["Calibration", "fit_calibration", "sample_volume", "draw_volumes", "cut_moments",
           "averaging_factor", "interval_coverage", "summary_line", "LEVELS"]

# The central interval levels a calibration keeps a multiplier for.
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


class Calibration:
    """How to read a model's predictive std on one scan (see the module docstring).

    Args:
        scale: factor > 0 from the model's std to the predictive std.
        multipliers: per level of `levels`, the half-width of the central
            predictive interval in predictive stds.
        voxels: held-out voxels it was fitted on.
        levels: the levels, in (0, 1).
        kept_detail: thick slices only, the share of the fine detail the
            slices keep (`slice_profile.kept_detail_share`), which `scale`
            has been divided by the square root of; None for point samples.
        averaging_factor: the volume's `averaging_factor` once measured
            (a record: `sample_volume` measures it again), or None.
    """

    def __init__(self, scale, multipliers, voxels, levels=LEVELS, kept_detail=None,
                 averaging_factor=None):
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be finite and > 0; received {scale}.")
        if len(multipliers) != len(levels):
            raise ValueError(f"{len(multipliers)} multipliers for {len(levels)} levels.")
        self.scale = float(scale)
        self.multipliers = tuple(float(m) for m in multipliers)
        self.voxels = int(voxels)
        self.levels = tuple(float(level) for level in levels)
        self.kept_detail = None if kept_detail is None else float(kept_detail)
        self.averaging_factor = None if averaging_factor is None else float(averaging_factor)

    def multiplier(self, level):
        """The central `level` interval's half-width, in predictive stds."""
        for known, multiplier in zip(self.levels, self.multipliers):
            if abs(known - level) < 1e-9:
                return multiplier
        raise ValueError(f"No calibrated interval at level {level!r}; the levels are "
                         f"{', '.join(f'{known:g}' for known in self.levels)}.")

    def as_dict(self):
        """JSON-ready: scale, voxels, {level: multiplier} (kept_detail_share,
        averaging_factor when known)."""
        content = {"scale": self.scale, "voxels": self.voxels,
                   "interval_multipliers": {f"{level:g}": multiplier for level, multiplier
                                            in zip(self.levels, self.multipliers)}}
        if self.kept_detail is not None:
            content["kept_detail_share"] = self.kept_detail
        if self.averaging_factor is not None:
            content["averaging_factor"] = self.averaging_factor
        return content

    @classmethod
    def from_dict(cls, content):
        """The inverse of `as_dict`."""
        levels = [float(level) for level in content["interval_multipliers"]]
        return cls(content["scale"], list(content["interval_multipliers"].values()),
                   content["voxels"], levels, content.get("kept_detail_share"),
                   content.get("averaging_factor"))

    def with_averaging_factor(self, factor):
        """A copy recording the volume's measured `averaging_factor`."""
        return Calibration(self.scale, self.multipliers, self.voxels, self.levels,
                           self.kept_detail, factor)

    def __repr__(self):
        return (f"Calibration(scale={self.scale:.3g}, 90%: +-{self.multiplier(0.9):.3g} std, "
                f"{self.voxels} voxels)")


def fit_calibration(model, held_out, sampling, num_samples=10, seed=0):
    """The calibration of `model`'s std from held-out acquired slices of one scan.

    Args:
        model: a trained `SparseVAE` taking cuts (``conv-interp-residual-vae``).
        held_out: (k, P, Q) normalised held-out slices (k may be 0).
        sampling: the scan's `training.RowSampling` (or n). Thick slices: the
            predictive is made consistent with the simulated slices (as
            `restored_uncertainty` does), every row between the first and
            last centres is scored, and the scale divided by the square root
            of the fine detail the slices keep (their errors are smaller than
            the fine grid's; `slice_profile.kept_detail_share`).
        num_samples: posterior draws per cut.
        seed: of the draws.

    Returns:
        A `Calibration`, or None when no held-out voxel was scored (no slice
        held out, or slices too small).
    """
    sampling = row_sampling(sampling)
    rng = np.random.default_rng(seed)
    standardised = []
    for truth in np.asarray(held_out, np.float32):
        for oriented in (truth, truth.T):
            if oriented.shape[0] < 2 * sampling.spacing + 1:
                continue
            images, masks, scored, _, projections = degrade(oriented, sampling)
            mean, variance = views_moments(model, images, masks, num_samples, rng,
                                           keep_observed=projections is None)
            if projections is not None:   # thick slices: as a restored volume
                mean = np.stack([slice_profile.project_onto_slices(cut, slices, weights)
                                 for cut, (slices, weights) in zip(mean, projections)])
                variance = np.stack([slice_profile.projected_variance(cut, weights)
                                     for cut, (_, weights) in zip(variance, projections)])
            scored = scored & (oriented[None] > FOREGROUND) & (variance > 0)
            standardised.append((oriented[None] - mean)[scored] / np.sqrt(variance[scored]))
    if not standardised or not sum(len(z) for z in standardised):
        return None
    z = np.abs(np.concatenate(standardised).astype(np.float64))
    scale = float(np.sqrt(np.mean(z**2)))
    kept = (None if sampling.profile.kind == "point" else
            slice_profile.kept_detail_share(held_out, sampling.profile, FOREGROUND))
    return Calibration(scale / np.sqrt(kept or 1.0), np.quantile(z / scale, LEVELS), len(z),
                       kept_detail=kept)


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


def summary_line(calibration):
    """One line for the log, e.g. ``std x 1.21 of the model's; 90% interval: +-1.58 std``.

    For thick slices it also says how much of the scale is the kept-detail
    correction (``1 / sqrt(kept share)``), an estimate that no held-out slice
    can check.
    """
    if calibration is None:
        return ("not calibrated (no held-out slices: --validation-share 0, or too few "
                "acquired slices): the std is the model's own")
    detail = ""
    if calibration.kept_detail is not None:
        # Thick slices: the part of the scale that is an estimate rather than a measurement.
        detail = (f" (of which x {1 / np.sqrt(calibration.kept_detail):.3g} for the fine detail "
                  f"the thick slices averaged away, estimated in-plane: kept share "
                  f"{calibration.kept_detail:.2f}; approximate: docs/thick_slice_mri.md, "
                  f"'Thick slices')")
    return (f"std x {calibration.scale:.3g} of the model's{detail}; central 50/90/95% intervals: "
            f"+-{calibration.multiplier(0.5):.3g} / {calibration.multiplier(0.9):.3g} / "
            f"{calibration.multiplier(0.95):.3g} std ({calibration.voxels} held-out voxels)")


def interval_coverage(mean, std, truth, region, calibration, levels=LEVELS):
    """The share of `region`'s voxels whose truth lies in each central interval.

    Args:
        mean, std, truth: arrays of one shape; region: bool, same shape.
        calibration: gives each level's multiplier; None: Gaussian ones.
        levels: nominal levels.

    Returns:
        float64 array, one observed coverage per level.
    """
    error = np.abs(np.asarray(truth, np.float64) - mean)[region]
    spread = np.asarray(std, np.float64)[region]
    return np.array([np.mean(error <= (NormalDist().inv_cdf(0.5 + level / 2) if calibration is None
                                       else calibration.multiplier(level)) * spread)
                     for level in levels])
