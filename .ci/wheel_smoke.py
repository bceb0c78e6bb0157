"""Smoke test of an installed wheel (run by .ci/run in a fresh venv, outside the
source tree): the packages import from site-packages, the command answers
--help, and one tiny imputation from a NIfTI file keeps its acquired slices."""

import os
import subprocess
import sys
import tempfile

import nibabel
import numpy as np

import imputers
import sparselayers

for package in (sparselayers, imputers):
    assert "site-packages" in package.__file__, f"{package.__name__} imported from {package.__file__}"
assert sparselayers.__version__ == imputers.__version__
from sparselayers import SparseDense  # noqa: E402,F401
from sparselayers.mri import dicom  # noqa: E402

dicom.dcm2niix_command()   # the mri extra brings dcm2niix
command = os.path.join(os.path.dirname(sys.executable), "sparselayers-impute-slices")
help_text = subprocess.run([command, "--help"], capture_output=True, text=True, check=True).stdout
assert "usage: sparselayers-impute-slices" in help_text

with tempfile.TemporaryDirectory() as folder:
    rng = np.random.default_rng(0)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in (32, 32, 25)], indexing="ij")
    volume = (100 + 50 * np.sin(3 * grids[0]) * np.cos(2 * grids[1]) + 30 * grids[2]
              + rng.normal(0, 1, grids[0].shape)).astype(np.float32)
    volume[:, :, np.arange(25) % 3 != 0] = 0
    source = os.path.join(folder, "scan.nii.gz")
    nibabel.save(nibabel.Nifti1Image(volume, np.diag([2.0, 2.0, 2.0, 1.0])), source)
    out = os.path.join(folder, "out")
    subprocess.run([command, source, "--out", out, "--steps", "5", "--steps-per-epoch", "5",
                    "--patch-size", "16", "--filters", "4", "--quiet"], check=True)
    result = nibabel.load(os.path.join(out, "scan_imputed.nii.gz")).get_fdata(dtype=np.float32)
    assert result.shape == volume.shape and np.isfinite(result).all()
    assert np.array_equal(result[:, :, ::3], volume[:, :, ::3])
    assert np.all(result[:, :, 1::3] != 0)
print(f"wheel smoke test passed: sparselayers {sparselayers.__version__} from "
      f"{os.path.dirname(sparselayers.__file__)}")
