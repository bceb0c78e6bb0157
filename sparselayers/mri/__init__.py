"""Thick-slice brain MRI: fill in the slices a clinical scan did not acquire.

One concept a module, in the order of the workflow:

* `volume_io`: reading and writing NIfTI / MGH / NumPy volumes.
* `acquisition`: which slices were acquired, along which axis (`find_acquisition`).
* `intensity`: robust scaling to about [0, 1] (`normalize`, `denormalize`).
* `training`: self-supervised training patches from the acquired slices.
* `imputation`: filling a volume with a trained model (`impute_volume`,
  `sample_volume`).
* `inputs`, `montage`, `workflow`: the workflow on files (`impute_slices`).
* `cli`: the ``sparselayers-impute-slices`` command.

Example:

>>> from sparselayers import mri
>>> outputs = mri.impute_slices(["scans/"], "imputed/")
"""

from sparselayers import _COMMAND_LINE

# The command line imports what it needs after parsing its arguments, so
# that --help does not wait for TensorFlow (see `sparselayers.console`).
if not _COMMAND_LINE:
    from sparselayers.mri import cli
    from sparselayers.mri.acquisition import Acquisition
    from sparselayers.mri.acquisition import find_acquisition
    from sparselayers.mri.acquisition import refine_thick_slices
    from sparselayers.mri.imputation import impute_volume
    from sparselayers.mri.imputation import sample_volume
    from sparselayers.mri.intensity import denormalize
    from sparselayers.mri.intensity import normalize
    from sparselayers.mri.training import training_dataset
    from sparselayers.mri.volume_io import read_volume
    from sparselayers.mri.volume_io import write_volume
    from sparselayers.mri.workflow import impute_slices

__all__ = [
    "Acquisition",
    "find_acquisition",
    "refine_thick_slices",
    "impute_volume",
    "sample_volume",
    "normalize",
    "denormalize",
    "training_dataset",
    "read_volume",
    "write_volume",
    "impute_slices",
    "acquisition",
    "cli",
    "imputation",
    "inputs",
    "intensity",
    "montage",
    "training",
    "volume_io",
    "workflow",
]
