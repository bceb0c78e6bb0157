"""Imputing one prepared volume and writing what the workflow writes for it.

`impute_and_write` fills a `inputs.PreparedVolume` with a trained model
(`imputation.impute_volume`; `uncertainty.sample_volume` and `draw_volumes`
for a sparse VAE; `restore_volume` for thick slices, `restored_uncertainty`
for a sparse VAE's), brings it back to the
input's units, checks it is finite and writes it (`volume_io.write_volume`), with its
montage PNG and its section of the run's report (`report.Report`).
`describe` is the one-line account of a volume's acquisition.
"""

import numpy as np

from sparselayers import console
from sparselayers.models.sparse_vae import SparseVAE
from sparselayers.mri import imputation
from sparselayers.mri import intensity
from sparselayers.mri import restored_uncertainty
from sparselayers.mri import uncertainty
from sparselayers.mri.inputs import draw_path
from sparselayers.mri import volume_io
from sparselayers.mri.montage import point_comparison
from sparselayers.mri.montage import save_montage
from sparselayers.mri.montage import thick_comparison

__all__ = ["impute_and_write", "describe"]


def _factor_line(factor):
    """The views' averaging factor (`uncertainty.averaging_factor`) in words."""
    return f"x {factor:.3f} for the mean of two orientations of cuts (measured on the volume)"


def _say_factor(factor, calibration, prepared, verbose):
    """The log line of the views' averaging factor."""
    if verbose and calibration is not None:
        print(f"std calibration, {prepared.path}: {_factor_line(factor)}")


def _std_note(model, calibration, factor):
    """The report's line on how the std was calibrated (a sparse VAE), else None."""
    if not isinstance(model, SparseVAE):
        return None
    if calibration is None:
        return uncertainty.summary_line(None)
    return f"{uncertainty.summary_line(calibration)}; {_factor_line(factor)}"


def impute_and_write(model, prepared, output_path, montage_path, std_path, samples, seed,
                     montage, report, verbose, calibration=None, draws=0):
    """Imputes `prepared` with `model` and writes its outputs.

    Args:
        model: the trained model.
        prepared: the `inputs.PreparedVolume`.
        output_path, montage_path, std_path: where its imputed volume, its
            montage and (sparse VAE) its per-voxel std go.
        samples, seed: posterior draws per cut of a sparse VAE, their seed.
        calibration: a sparse VAE's `calibration.Calibration` for this
            volume, or None (its std uncalibrated).
        draws: multiple imputations to write (`inputs.draw_path` of
            `std_path`), a sparse VAE only; each has the acquired voxels
            exactly as the input.
        montage: whether to write the montage.
        report: a `report.Report` to add the volume's section to, or None.
        verbose: 1 for progress output.

    Returns:
        The std's `uncertainty.averaging_factor` (a calibrated sparse VAE),
        else None.

    Raises:
        ValueError: naming the output, if it would hold NaN or Inf voxels
            (nothing is written).
    """
    factor = None
    volume, data, affine = prepared.load()
    scaled, scale = intensity.normalize(data, prepared.acquisition)
    acquired = prepared.acquisition.mask(data.shape)
    # A magnitude image (every acquired voxel >= 0) gets no negative voxel.
    magnitude = data[acquired].min() >= 0
    if prepared.slice_grid is not None:
        minimum = -scale[0] / (scale[1] - scale[0]) if magnitude else None
        slices = np.compress(prepared.acquisition.acquired, scaled, axis=prepared.axis)
        grid, spread = prepared.slice_grid, None
        if isinstance(model, SparseVAE):
            result, spread, factor = restored_uncertainty.restore_moments(
                model, slices, grid, samples, seed=seed, calibration=calibration,
                minimum=minimum, return_factor=True)
            _say_factor(factor, calibration, prepared, verbose)
            spread *= np.float32(scale[1] - scale[0])
            _check_finite(spread, std_path)
            volume_io.write_volume(std_path, spread, volume, affine=affine)
            for index, draw in enumerate(restored_uncertainty.draw_restored_volumes(
                    model, slices, grid, draws, calibration, seed=seed, minimum=minimum)
                    if draws else (), start=1):
                _write_restored(draw, scale, magnitude, draw_path(std_path, index), volume,
                                affine, verbose)
        else:
            result = imputation.restore_volume(
                model, slices, grid, verbose=console.progress_verbosity(not verbose),
                minimum=minimum)
        result = _write_restored(result, scale, magnitude, output_path, volume, affine, False)
        _pictures(thick_comparison(data, prepared.acquisition, grid, result),
                  prepared, output_path, montage_path if montage else None, report, affine,
                  spread, _std_note(model, calibration, factor))
        if verbose:
            print(f"wrote {output_path}")
        return None if calibration is None else factor
    spread = None
    if isinstance(model, SparseVAE):
        filled, spread, factor = uncertainty.sample_volume(
            model, scaled, prepared.acquisition, samples, seed=seed, calibration=calibration,
            return_factor=True)
        _say_factor(factor, calibration, prepared, verbose)
        spread *= np.float32(scale[1] - scale[0])
        for index, draw in enumerate(uncertainty.draw_volumes(
                model, scaled, prepared.acquisition, draws, calibration, seed=seed)
                if draws else (), start=1):
            _to_input_units(draw, scale, magnitude, data, acquired)
            path = draw_path(std_path, index)
            _check_finite(draw, path)
            volume_io.write_volume(path, draw, volume, affine=affine)
            if verbose:
                print(f"wrote {path}")
    else:
        filled = imputation.impute_volume(
            model, scaled, prepared.acquisition, verbose=console.progress_verbosity(not verbose))
    del scaled
    # Back to the input's units in place (memory: data and result only),
    # then the acquired voxels copied exactly.
    result = _to_input_units(filled, scale, magnitude, data, acquired)
    _check_finite(result, output_path)
    if spread is not None:
        _check_finite(spread, std_path)
        volume_io.write_volume(std_path, spread, volume, affine=affine)
    volume_io.write_volume(output_path, result, volume, affine=affine)
    _pictures(point_comparison(data, acquired, result, prepared.acquisition), prepared,
              output_path, montage_path if montage else None, report, affine, spread,
              _std_note(model, calibration, factor))
    if verbose:
        print(f"wrote {output_path}")
    return None if calibration is None else factor


def _write_restored(result, scale, magnitude, path, volume, affine, verbose):
    """A restored fine-grid volume in the input's units (>= 0 for a magnitude image), written."""
    result = intensity.denormalize(result, scale)
    if magnitude:   # the bound, kept through the unscaling's rounding
        np.maximum(result, 0, out=result)
    _check_finite(result, path)
    volume_io.write_volume(path, result, volume, affine=affine)
    if verbose:
        print(f"wrote {path}")
    return result


def _to_input_units(result, scale, magnitude, data, acquired):
    """`result` in place: unscaled, >= 0 for a magnitude image, acquired voxels as `data`."""
    result *= np.float32(scale[1] - scale[0])
    result += np.float32(scale[0])
    if magnitude:
        np.maximum(result, 0, out=result)
    np.copyto(result, data, where=acquired)
    return result


def _pictures(comparison, prepared, output_path, montage_path, report, affine, spread=None,
              std_note=None):
    if montage_path is not None:
        save_montage(montage_path, comparison)
    if report is not None:
        zooms = np.sqrt(np.sum(np.asarray(affine, np.float64)[:3, :3] ** 2, axis=0))
        report.add_volume(prepared.path, describe(prepared), output_path, comparison, zooms,
                          spread, std_note)


def _check_finite(result, path):
    bad = np.count_nonzero(~np.isfinite(result))
    if bad:
        raise ValueError(f"{path}: not written, {bad} voxels would be NaN or Inf (a model that "
                         "diverged or does not map [image, mask] to an image).")


def describe(prepared):
    """One line of how a prepared volume was acquired and how it is restored."""
    grid = prepared.slice_grid
    if grid is None:
        return f"every {prepared.every}" + (" (thick slices: grid refined, point samples)"
                                            if prepared.thick else "")
    voxel = float(prepared.zooms[prepared.axis])
    fine = voxel * grid.source_step
    profile = grid.profile
    return (f"{len(grid.centres)} slices {grid.spacing * fine:.3g} mm apart, {profile.kind} "
            f"profile {profile.thickness * fine:.3g} mm thick -> {grid.size} voxels of "
            f"{fine:.3g} mm")
