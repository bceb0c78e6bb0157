"""Thick-slice brain MRI: fill in the slices a clinical scan did not acquire.

One concept a module, in the order of the workflow:

* `volume_io`: reading and writing NIfTI / MGH / NumPy volumes.
* `dicom`: folders of DICOM series converted to NIfTI by dcm2niix.
* `bids`: a BIDS dataset in, a BIDS derivatives dataset out (`impute_bids`).
* `acquisition`: which slices were acquired, along which axis (`find_acquisition`).
* `intensity`: robust scaling to about [0, 1] (`normalize`, `denormalize`).
* `slice_profile`: how a slice averages the tissue across its thickness
  (point, box, Gaussian), the forward model and the data-consistency projection.
* `slice_grid`: the fine grid a thick-slice file is restored on.
* `training`: self-supervised training patches from the acquired slices,
  degraded as each scan was acquired.
* `training_backup`: a training's backup that survives a kill, and resuming
  from it on the same batches.
* `imputation`: filling a volume with a trained model (`impute_volume`),
  restoring a thick-slice volume (`restore_volume`).
* `self_validation`: the model against interpolation on held-out acquired slices.
* `calibration`: how to read a sparse VAE's std on one scan, fitted on its
  held-out acquired slices (`fit_calibration`, `Calibration`).
* `reference_calibration`: the thick-slice std's through-plane factor
  measured on fine reference scans (``--std-reference``).
* `uncertainty`: a sparse VAE's calibrated predictive std and multiple
  imputations (`sample_volume`, `draw_volumes`).
* `restored_uncertainty`: the same on a thick-slice volume's fine grid
  (`restore_moments`, `draw_restored_volumes`).
* `inputs`, `options`, `model_checks`, `montage`, `volume_outputs`, `workflow`:
  the workflow on files (`impute_slices`).
* `report`: the run's quality-control page, ``report.html``.
* `cli`: the ``sparselayers-impute-slices`` command.

Example:

>>> from sparselayers import mri
>>> outputs = mri.impute_slices(["scans/"], "imputed/")
"""

from sparselayers import console

# The command line imports what it needs after parsing its arguments, so
# that --help does not wait for TensorFlow (see `sparselayers.console`).
if not console.running_a_command():
    from sparselayers.mri import cli
    from sparselayers.mri.bids import impute_bids
    from sparselayers.mri.acquisition import Acquisition
    from sparselayers.mri.acquisition import find_acquisition
    from sparselayers.mri.acquisition import refine_thick_slices
    from sparselayers.mri.imputation import impute_volume
    from sparselayers.mri.imputation import restore_volume
    from sparselayers.mri.restored_uncertainty import draw_restored_volumes
    from sparselayers.mri.restored_uncertainty import restore_moments
    from sparselayers.mri.uncertainty import draw_volumes
    from sparselayers.mri.calibration import fit_calibration
    from sparselayers.mri.uncertainty import sample_volume
    from sparselayers.mri.intensity import denormalize
    from sparselayers.mri.intensity import normalize
    from sparselayers.mri.slice_grid import SliceGrid
    from sparselayers.mri.slice_grid import thick_slice_grid
    from sparselayers.mri.slice_profile import SliceProfile
    from sparselayers.mri.training import training_dataset
    from sparselayers.mri.volume_io import read_volume
    from sparselayers.mri.volume_io import write_volume
    from sparselayers.mri.workflow import impute_slices

__all__ = [
    "Acquisition",
    "find_acquisition",
    "refine_thick_slices",
    "impute_volume",
    "restore_volume",
    "sample_volume",
    "draw_volumes",
    "fit_calibration",
    "restore_moments",
    "draw_restored_volumes",
    "SliceGrid",
    "SliceProfile",
    "thick_slice_grid",
    "normalize",
    "denormalize",
    "training_dataset",
    "read_volume",
    "write_volume",
    "impute_slices",
    "impute_bids",
    "acquisition",
    "bids",
    "calibration",
    "cli",
    "dicom",
    "imputation",
    "inputs",
    "intensity",
    "model_checks",
    "montage",
    "options",
    "reference_calibration",
    "report",
    "restored_uncertainty",
    "self_validation",
    "slice_grid",
    "slice_profile",
    "training",
    "training_backup",
    "uncertainty",
    "volume_io",
    "volume_outputs",
    "workflow",
]
