"""Deprecated: `sparselayers.thick_slices` was split into `sparselayers.mri` in 0.2.0.

`Acquisition`, `find_acquisition`, `refine_thick_slices` are in
`sparselayers.mri.acquisition`; `normalize`, `denormalize` in
`sparselayers.mri.intensity`; `acquired_slices`, `sample_patches`,
`training_dataset`, `as_sparse_vae_triples` (now `as_sparse_vae_batches`) in
`sparselayers.mri.training`;
`impute_volume`, `sample_volume`, `check_cuts_fit` in
`sparselayers.mri.imputation`. This alias warns on import and goes away in 0.3.0.
"""

import warnings

from sparselayers.mri.acquisition import Acquisition  # noqa: F401
from sparselayers.mri.acquisition import find_acquisition  # noqa: F401
from sparselayers.mri.acquisition import refine_thick_slices  # noqa: F401
from sparselayers.mri.imputation import ACTIVATION_VALUES_PER_CALL  # noqa: F401
from sparselayers.mri.imputation import check_cuts_fit  # noqa: F401
from sparselayers.mri.imputation import impute_volume  # noqa: F401
from sparselayers.mri.uncertainty import sample_volume  # noqa: F401
from sparselayers.mri.intensity import denormalize  # noqa: F401
from sparselayers.mri.intensity import normalize  # noqa: F401
from sparselayers.mri.training import FOREGROUND  # noqa: F401
from sparselayers.mri.training import MIN_FOREGROUND_SHARE  # noqa: F401
from sparselayers.mri.training import acquired_slices  # noqa: F401
from sparselayers.mri.training import as_sparse_vae_batches as as_sparse_vae_triples  # noqa: F401
from sparselayers.mri.training import sample_patches  # noqa: F401
from sparselayers.mri.training import training_dataset  # noqa: F401

warnings.warn("sparselayers.thick_slices is deprecated: import from sparselayers.mri "
              "(acquisition, intensity, training, imputation) instead (the alias goes away "
              "in 0.3.0).", DeprecationWarning, stacklevel=2)
