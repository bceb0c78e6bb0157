"""How to read a sparse VAE's std on one scan: the calibration and its fitting.

No ground truth exists for a clinical scan's missing slices, so the
model's predictive standard deviation (`uncertainty`) is calibrated on the
scan's own held-out acquired slices (`self_validation.held_out_slices`,
never trained on), degraded as the scan was acquired
(`self_validation.degrade`) and filled in by the same model: on their
hidden voxels in the head, the standardised errors z = (truth - mean) / std
give

* `Calibration.scale`, the root mean square of z: the model's std times it
  is the predictive standard deviation written to ``<name>_std.nii.gz``;
* `Calibration.multipliers`: per level p (`LEVELS`), the p-quantile of
  |z| / scale, so that ``mean +- multiplier(p) * std`` is the central p
  predictive interval (a split-conformal interval: its coverage on held-out
  data is p by construction, whatever the errors' shape; a Gaussian would
  give 1.645 at p = 0.9).

This assumes that errors in-plane and through-plane are alike (the premise
of the self-supervised training itself). Thick slices keep less fine detail
in-plane than the tissue has: the scale is corrected by the kept-detail
estimate, or by the through-plane factor measured on fine reference scans
(`reference_calibration`). `summary_line` says which in the log;
`interval_coverage` scores intervals against a truth (the benchmarks).

Example:

>>> calibration = fit_calibration(model, held_out_stack, sampling)
>>> calibration.multiplier(0.9)     # the 90% interval's half-width, in stds
1.58
"""

from statistics import NormalDist

import numpy as np

from sparselayers.mri import slice_profile
from sparselayers.mri.self_validation import degrade
from sparselayers.mri.training import FOREGROUND
from sparselayers.mri.training import row_sampling
from sparselayers.mri.view_moments import views_moments

__all__ = ["Calibration", "fit_calibration", "standardised_errors", "summary_line",
           "interval_coverage", "LEVELS"]

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
        through_plane_factor: thick slices calibrated on reference scans
            (`reference_calibration`), the measured factor F by which the
            fine grid's mean squared standardised error exceeds the held-out
            slices' (`scale` is the held-out scale times sqrt(F), in place
            of the kept-detail estimate); None: not measured.
        references: with `through_plane_factor`, {reference path: its F}.
    """

    def __init__(self, scale, multipliers, voxels, levels=LEVELS, kept_detail=None,
                 averaging_factor=None, through_plane_factor=None, references=None):
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
        self.through_plane_factor = (None if through_plane_factor is None
                                     else float(through_plane_factor))
        self.references = {str(path): float(factor)
                           for path, factor in (references or {}).items()}

    def multiplier(self, level):
        """The central `level` interval's half-width, in predictive stds."""
        for known, multiplier in zip(self.levels, self.multipliers):
            if abs(known - level) < 1e-9:
                return multiplier
        raise ValueError(f"No calibrated interval at level {level!r}; the levels are "
                         f"{', '.join(f'{known:g}' for known in self.levels)}.")

    def as_dict(self):
        """JSON-ready: scale, voxels, {level: multiplier} (kept_detail_share,
        averaging_factor, through_plane_factor and std_references when known)."""
        content = {"scale": self.scale, "voxels": self.voxels,
                   "interval_multipliers": {f"{level:g}": multiplier for level, multiplier
                                            in zip(self.levels, self.multipliers)}}
        if self.kept_detail is not None:
            content["kept_detail_share"] = self.kept_detail
        if self.averaging_factor is not None:
            content["averaging_factor"] = self.averaging_factor
        if self.through_plane_factor is not None:
            content["through_plane_factor"] = self.through_plane_factor
            content["std_references"] = dict(self.references)
        return content

    @classmethod
    def from_dict(cls, content):
        """The inverse of `as_dict`."""
        levels = [float(level) for level in content["interval_multipliers"]]
        return cls(content["scale"], list(content["interval_multipliers"].values()),
                   content["voxels"], levels, content.get("kept_detail_share"),
                   content.get("averaging_factor"), content.get("through_plane_factor"),
                   content.get("std_references"))

    def with_averaging_factor(self, factor):
        """A copy recording the volume's measured `averaging_factor`."""
        return Calibration(self.scale, self.multipliers, self.voxels, self.levels,
                           self.kept_detail, factor, self.through_plane_factor,
                           self.references)

    def __repr__(self):
        return (f"Calibration(scale={self.scale:.3g}, 90%: +-{self.multiplier(0.9):.3g} std, "
                f"{self.voxels} voxels)")


def fit_calibration(model, held_out, sampling, num_samples=10, seed=0, through_plane=None):
    """The calibration of `model`'s std from held-out acquired slices of one scan.

    Args:
        model: a trained `SparseVAE` taking cuts (``conv-interp-residual-vae``).
        held_out: (k, P, Q) normalised held-out slices (k may be 0).
        sampling: the scan's `training.RowSampling` (or n). Thick slices: the
            predictive is made consistent with the simulated slices (as
            `restored_uncertainty` does), every row between the first and
            last centres is scored, and the scale divided by the square root
            of the fine detail the slices keep (their errors are smaller than
            the fine grid's; `slice_profile.kept_detail_share`), an estimate
            that takes the tissue as isotropic.
        num_samples: posterior draws per cut.
        seed: of the draws.
        through_plane: thick slices only: None, or ``(factor, {reference
            path: its factor})`` measured on fine reference scans
            (`reference_calibration.through_plane_factor`): the scale is
            multiplied by sqrt(factor) instead of divided by the square root
            of the kept share (which is still recorded).

    Returns:
        A `Calibration`, or None when no held-out voxel was scored (no slice
        held out, or slices too small).
    """
    sampling = row_sampling(sampling)
    if through_plane is not None and sampling.profile.kind == "point":
        raise ValueError("A through-plane factor from reference scans is for thick slices (a "
                         "box or Gaussian profile); this scan's slices are point samples.")
    z = standardised_errors(model, held_out, sampling, num_samples, seed)
    if not len(z):
        return None
    scale = float(np.sqrt(np.mean(z**2)))
    multipliers = np.quantile(z / scale, LEVELS)
    kept = (None if sampling.profile.kind == "point" else
            slice_profile.kept_detail_share(held_out, sampling.profile, FOREGROUND))
    if through_plane is not None:
        factor, references = through_plane
        return Calibration(scale * np.sqrt(factor), multipliers, len(z), kept_detail=kept,
                           through_plane_factor=factor, references=references)
    return Calibration(scale / np.sqrt(kept or 1.0), multipliers, len(z), kept_detail=kept)


def standardised_errors(model, held_out, sampling, num_samples=10, seed=0):
    """|z| = |truth - mean| / std of held-out slices degraded as `sampling` acquires.

    What `fit_calibration` is fitted on (see there): float64 (M,), one per
    scored voxel above `training.FOREGROUND`; empty when none is scored.
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
    if not standardised:
        return np.zeros(0)
    return np.abs(np.concatenate(standardised).astype(np.float64))


def summary_line(calibration):
    """One line for the log, e.g. ``std x 1.21 of the model's; 90% interval: +-1.58 std``.

    For thick slices it also says how much of the scale is the through-plane
    correction: ``1 / sqrt(kept share)``, an estimate that no held-out slice
    can check, or ``sqrt(F)`` measured on reference scans.
    """
    if calibration is None:
        return ("not calibrated (no held-out slices: --validation-share 0, or too few "
                "acquired slices): the std is the model's own")
    detail = ""
    if calibration.through_plane_factor is not None:
        count = len(calibration.references)
        estimate = ("" if calibration.kept_detail is None else
                    f"; the in-plane estimate would have been x "
                    f"{1 / np.sqrt(calibration.kept_detail):.3g}")
        detail = (f" (of which x {np.sqrt(calibration.through_plane_factor):.3g} for the fine "
                  f"detail the thick slices averaged away, measured on {count} reference "
                  f"scan{'s' if count != 1 else ''} made into thick slices as this one"
                  f"{estimate})")
    elif calibration.kept_detail is not None:
        # Thick slices: the part of the scale that is an estimate rather than a measurement.
        detail = (f" (of which x {1 / np.sqrt(calibration.kept_detail):.3g} for the fine detail "
                  f"the thick slices averaged away, estimated in-plane: kept share "
                  f"{calibration.kept_detail:.2f}; approximate: docs/thick_slice_mri.md, "
                  f"'Thick slices'; --std-reference measures it)")
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
