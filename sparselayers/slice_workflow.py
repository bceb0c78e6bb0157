"""Deprecated: `sparselayers.slice_workflow` was split into `sparselayers.mri` in 0.2.0.

`impute_slices` and `train` are in `sparselayers.mri.workflow`; `build_parser`
and `main` (the ``sparselayers-impute-slices`` command) in
`sparselayers.mri.cli`; `list_inputs` and `output_paths` in
`sparselayers.mri.inputs`. This alias warns on import and goes away in 0.3.0.
"""

import sys
import warnings

from sparselayers.mri.cli import build_parser  # noqa: F401
from sparselayers.mri.cli import main
from sparselayers.mri.inputs import list_inputs  # noqa: F401
from sparselayers.mri.inputs import output_paths  # noqa: F401
from sparselayers.mri.workflow import BACKUP_FOLDER  # noqa: F401
from sparselayers.mri.workflow import impute_slices  # noqa: F401
from sparselayers.mri.workflow import train  # noqa: F401

warnings.warn("sparselayers.slice_workflow is deprecated: import from sparselayers.mri "
              "(workflow, cli, inputs) instead (the alias goes away in 0.3.0).",
              DeprecationWarning, stacklevel=2)

if __name__ == "__main__":
    sys.exit(main())
