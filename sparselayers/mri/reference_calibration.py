"""The thick-slice std's through-plane factor, measured on fine reference scans.

A thick-slice scan's std is calibrated on its own held-out slices
(`calibration.fit_calibration`), degraded in-plane. Its fine voxels err
more: the thick slices averaged away fine detail in every direction, and
the model's own variance may or may not grow with it through the plane.
Without a fine scan the factor F between the two (mean squared standardised
error through the plane over in-plane) is *estimated* from the kept detail
share, which is right to within about 1.5x (`docs/thick_slice_mri.md`).

With a fine scan of the same contrast and protocol (a 3-D T1 of another
subject from the same scanner, say: never one of the scans imputed), F is
*measured*: the reference is made into thick slices as the input was
acquired (its profile, thickness and spacing along its axis), restored by
the trained model, and scored against its own fine voxels, beside the same
model's held-out-style errors on its thick slices in-plane. The median F over
the references replaces the kept-detail estimate
(``fit_calibration(..., through_plane=...)``). The reference must lie on the
restored grid's voxel size (the input's in-plane voxel size, and
``--resolution`` along the axis); its orientation is matched to the input's.

Example:

>>> read_reference("ref_T1w.nii.gz", prepared)      # checks it fits (before training)
>>> factor, per_reference = through_plane_factor(model, ["ref_T1w.nii.gz"], prepared)
>>> calibration = fit_calibration(model, held_out, prepared.sampling,
...                               through_plane=(factor, per_reference))
"""

import os

import numpy as np

from sparselayers.models.sparse_vae import SparseVAE
from sparselayers.mri import calibration
from sparselayers.mri import intensity
from sparselayers.mri import restored_uncertainty
from sparselayers.mri import volume_io
from sparselayers.mri.acquisition import Acquisition
from sparselayers.mri.slice_grid import thick_slice_grid
from sparselayers.mri.slice_profile import SliceProfile
from sparselayers.mri.training import FOREGROUND

__all__ = ["read_reference", "through_plane_factor", "acquisition_key",
           "check_references", "through_plane_factors", "VOXEL_TOLERANCE", "IN_PLANE_SLICES"]

# Relative difference of voxel sizes taken as equal (header rounding).
VOXEL_TOLERANCE = 0.02
# The reference's thick slices the in-plane errors are measured on (evenly spread).
IN_PLANE_SLICES = 8
# Fewest thick slices a reference must hold along the axis.
MIN_SLICES = 3


def fine_voxel_size(prepared):
    """(3,) mm: the restored grid's voxel size of a thick-slice `PreparedVolume`."""
    zooms = np.asarray(prepared.zooms, np.float64).copy()
    zooms[prepared.axis] *= prepared.slice_grid.source_step
    return zooms


def read_reference(path, prepared):
    """Reads a fine reference scan and lays it out as `prepared`'s restored grid.

    Args:
        path: a volume file (`volume_io.read_volume`'s formats).
        prepared: a thick-slice `PreparedVolume` (box or Gaussian profile).

    Returns:
        float32 (X, Y, Z): the reference in the input's voxel-axis orientation,
        the acquisition axis at the input's `axis`, fine voxels along it.

    Raises:
        ValueError: naming the file, if it is not a readable finite 3-D
            volume, if its voxel size (after matching the input's
            orientation) differs from the restored grid's by more than
            `VOXEL_TOLERANCE`, or if it holds fewer than `MIN_SLICES` of the
            input's slices along the axis.
    """
    from nibabel import orientations   # the mri extra's

    if prepared.slice_grid is None:
        raise ValueError(f"--std-reference {path}: {prepared.path} has point samples "
                         "(missing slices); a reference calibrates thick slices (box or "
                         "Gaussian profile).")
    volume = volume_io.read_volume(path)
    transform = orientations.ornt_transform(orientations.io_orientation(volume.affine),
                                            orientations.io_orientation(prepared.affine))
    data = orientations.apply_orientation(volume.data, transform).astype(np.float32)
    zooms = np.empty(3)
    zooms[transform[:, 0].astype(int)] = volume.zooms
    want = fine_voxel_size(prepared)
    if np.any(np.abs(zooms - want) > VOXEL_TOLERANCE * want):
        raise ValueError(
            f"--std-reference {path}: voxel size {_mm(zooms)} mm (in {prepared.path}'s "
            f"orientation) differs from its restored grid's {_mm(want)} mm; resample the "
            "reference to it first (e.g. nibabel.processing.resample_to_output, or give "
            "--resolution).")
    grid = _reference_grid(prepared, data.shape[prepared.axis])
    if grid is None:
        raise ValueError(
            f"--std-reference {path}: {data.shape[prepared.axis]} voxels along axis "
            f"{prepared.axis} hold fewer than {MIN_SLICES} of {prepared.path}'s slices.")
    return np.ascontiguousarray(data)


def _mm(values):
    return " x ".join(f"{value:.3g}" for value in values)


def _reference_grid(prepared, length):
    """The input's acquisition on `length` fine voxels: a `SliceGrid`, axis 0, or None."""
    grid = prepared.slice_grid
    step = float(fine_voxel_size(prepared)[prepared.axis])   # mm per fine voxel
    profile = SliceProfile(grid.profile.kind, grid.profile.thickness * step)
    count = int(length // grid.spacing) + 1
    while count >= MIN_SLICES:
        found = thick_slice_grid(count, 0, grid.spacing * step, step, profile)
        if found.size <= length:
            return found
        count -= 1
    return None


def through_plane_factor(model, paths, prepared, num_samples=10, seed=0):
    """The median over the reference scans of the through-plane factor F (module docstring).

    For each reference: thick slices of its central segment along the axis
    (the input's profile and spacing), normalised as an input is
    (`intensity.normalize` of its slices); F = the mean squared
    standardised error of its restored fine voxels above
    `training.FOREGROUND` (std: the model's, times the volume's views'
    averaging factor, as a calibrated std is) over the same on
    `IN_PLANE_SLICES` of its thick slices degraded in-plane
    (`calibration.standardised_errors`). One reference is in memory at a
    time.

    Args:
        model: the trained `SparseVAE`.
        paths: the reference files (`read_reference` checks them).
        prepared: the thick-slice `PreparedVolume` whose acquisition they
            are made into.
        num_samples, seed: posterior draws per cut, and their seed.

    Returns:
        (F, {reference path: its F}).
    """
    per_reference = {}
    for path in paths:
        per_reference[str(path)] = _one_factor(model, path, read_reference(path, prepared),
                                               prepared, num_samples, seed)
    return float(np.median(list(per_reference.values()))), per_reference


def acquisition_key(prepared):
    """What the factor depends on besides the model: inputs alike share one."""
    from nibabel import orientations

    grid = prepared.slice_grid
    return (prepared.axis, tuple(np.round(fine_voxel_size(prepared), 4)),
            round(grid.spacing, 4), grid.profile.kind, round(grid.profile.thickness, 4),
            tuple(np.round(prepared.in_plane_ratio, 4)),
            tuple(orientations.aff2axcodes(prepared.affine)))


def _one_factor(model, path, reference, prepared, num_samples, seed):
    from scipy import ndimage   # the mri extra's

    fine = np.moveaxis(reference, prepared.axis, 0)          # (L, P, Q)
    grid = _reference_grid(prepared, len(fine))
    start = (len(fine) - grid.size) // 2
    truth = fine[start:start + grid.size].astype(np.float64)
    slices = np.tensordot(grid.forward_matrix(), truth, axes=1).astype(np.float32)  # (K, P, Q)
    # Normalised as an input is: by its (thick) slices' percentiles.
    slices, (low, high) = intensity.normalize(
        slices, Acquisition(0, np.ones(len(slices), bool), 1, thick=True))
    truth = (truth - low) / (high - low)
    # Through the plane: the restored fine grid against the reference's own voxels.
    # A unit calibration: the model's std times the volume's views' factor only.
    unit = calibration.Calibration(1.0, [1.0] * len(calibration.LEVELS), 0)
    mean, std = restored_uncertainty.restore_moments(model, slices, grid, num_samples,
                                                     seed=seed, calibration=unit)
    scored = (truth > FOREGROUND) & (std > 0)
    # In-plane: the thick slices degraded as acquired, as the held-out slices are.
    chosen = np.unique(np.linspace(1, len(slices) - 2, min(IN_PLANE_SLICES, len(slices)))
                       .round().astype(int))
    stack = slices[chosen]
    if max(abs(r - 1.0) for r in prepared.in_plane_ratio) > 0.1:   # as `PreparedVolume.slices`
        stack = np.stack([ndimage.zoom(s, prepared.in_plane_ratio, order=1) for s in stack])
    in_plane = calibration.standardised_errors(model, stack, prepared.sampling, num_samples, seed)
    if not len(in_plane) or not np.any(scored):
        raise ValueError(f"--std-reference {path}: no voxel of it above the "
                         "foreground threshold could be scored (is it a head?).")
    through = np.mean(((truth - mean)[scored] / std[scored]) ** 2)
    return float(through / np.mean(in_plane**2))


def check_references(std_reference, prepared, model, model_name, validation_share):
    """The reference scans' paths (a list, maybe empty), checked before any training.

    Raises:
        ValueError: naming the reference or the setting at fault: references
            for a model without a std, with no held-out slices to calibrate
            on, with no thick-slice input, or one that does not fit an input
            (`reference_calibration.read_reference`).
    """
    if std_reference is None:
        return []
    paths = ([std_reference] if isinstance(std_reference, (str, os.PathLike))
             else list(std_reference))
    paths = [str(path) for path in paths]
    if not paths:
        return []
    if not isinstance(model, SparseVAE):
        raise ValueError(f"--std-reference calibrates a sparse VAE's std (--variant "
                         f"conv-interp-residual-vae); {model_name} has none.")
    if not validation_share:
        raise ValueError("--std-reference needs held-out slices to calibrate on "
                         "(--validation-share > 0); received --validation-share 0.")
    thick = [p for p in prepared if p.slice_grid is not None]
    if not thick:
        raise ValueError("--std-reference is for thick-slice inputs (box or Gaussian slice "
                         "profile); every input has point samples (missing slices).")
    checked = set()
    for p in thick:
        key = acquisition_key(p)
        if key in checked:
            continue
        checked.add(key)
        for path in paths:   # read and checked; not kept (memory)
            read_reference(path, p)
    return paths


def through_plane_factors(model, prepared, references, samples, seed, verbose):
    """Per input, None or ``(F, {reference: F})`` for `calibration.fit_calibration`;
    measured once per distinct thick-slice acquisition."""
    found, measured = [], {}
    for p in prepared:
        if not references or p.slice_grid is None:
            found.append(None)
            continue
        key = acquisition_key(p)
        if key not in measured:
            if verbose:
                print(f"measuring the thick-slice std's through-plane factor on "
                      f"{len(references)} reference scan{'s' if len(references) > 1 else ''} "
                      f"made into thick slices as {p.path}...")
            measured[key] = through_plane_factor(model, references, p, samples, seed)
        found.append(measured[key])
    return found
