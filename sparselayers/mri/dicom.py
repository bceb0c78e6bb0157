"""DICOM series in: a folder of DICOM files converted to NIfTI by dcm2niix.

Clinical thick-slice scans arrive as DICOM series. Rather than reading
DICOM ourselves, the workflow hands such a folder to `dcm2niix`
(https://github.com/rordenlab/dcm2niix, installed with the ``mri`` extra by
the PyPI package of the same name), the converter the neuroimaging tools
rely on: it sorts the files into series, orders the slices along their
normal, writes the voxel-to-world affine (oblique orientations included),
applies the rescale slope, and writes a BIDS JSON sidecar holding the
series' ``SliceThickness`` and ``SpacingBetweenSlices``. The slice spacing
becomes the NIfTI's voxel size along the slice axis, and the sidecar's
thickness the slice profile's width (`sparselayers.mri.inputs`), so a scan
with gaps between its slices (thickness < spacing) is modelled as it was
acquired.

Each series becomes ``<folder>_<series number>_<series description>.nii.gz``
(dcm2niix's ``-f %f_%s_%d``) with its ``.json`` sidecar, in the workflow's
``<out>/converted/``; localizers and derived images are skipped (``-i y``).

Example:

>>> convert_dicom_folder("patient_042/", "imputed/converted")
['imputed/converted/patient_042_3_T2_AX.nii.gz']
"""

import os
import shutil
import subprocess
import tempfile

__all__ = ["is_dicom_file", "holds_dicom", "dcm2niix_command", "convert_dicom_folder"]

# dcm2niix's output name: input folder, series number, series description.
NAME_PATTERN = "%f_%s_%d"


def is_dicom_file(path):
    """True if `path` is a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as file:
            header = file.read(132)
    except OSError:
        return False
    return len(header) == 132 and header[128:] == b"DICM"


def holds_dicom(folder):
    """True if `folder` or one of its sub-folders holds a DICOM file."""
    for root, _folders, names in os.walk(folder):
        if any(is_dicom_file(os.path.join(root, name)) for name in names
               if not name.startswith(".")):
            return True
    return False


def dcm2niix_command():
    """The dcm2niix executable: the PyPI package's, else one on the PATH.

    Raises:
        ImportError: if neither is installed.
    """
    try:
        import dcm2niix
    except ImportError:
        dcm2niix = None
    if dcm2niix is not None and os.path.isfile(dcm2niix.bin):
        return dcm2niix.bin
    found = shutil.which("dcm2niix")
    if found is None:
        raise ImportError("Reading DICOM series needs dcm2niix: pip install \".[mri]\" (from a "
                          "clone of sparselayers), or install dcm2niix on the PATH.")
    return found


def convert_dicom_folder(folder, destination, claimed=None):
    """Converts the DICOM series under `folder` to NIfTI files in `destination`.

    Conversion runs in a temporary folder inside `destination`, and each
    file is then renamed into place, so a repeated run (``--resume``)
    replaces the files of the previous one instead of adding dcm2niix's
    ``a``/``b`` suffixes.

    Args:
        folder: a folder holding one or more DICOM series (sub-folders too).
        destination: the folder the NIfTI files and JSON sidecars go to
            (created).
        claimed: a dict of NIfTI path -> source folder already converted in
            this run (updated); a second folder converting to the same name
            is refused.

    Returns:
        The NIfTI paths written, sorted.

    Raises:
        ValueError: naming the folder, if dcm2niix fails or finds no image
            series in it, or if two input folders give the same file name.
        ImportError: if dcm2niix is not installed.
    """
    command = dcm2niix_command()
    claimed = {} if claimed is None else claimed
    os.makedirs(destination, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".converting-", dir=destination) as work:
        run = subprocess.run(
            [command, "-z", "y", "-b", "y", "-i", "y", "-f", NAME_PATTERN, "-o", work,
             str(folder)], capture_output=True, text=True)
        written = sorted(name for name in os.listdir(work) if name.endswith(".nii.gz"))
        if run.returncode != 0 or not written:
            lines = [line for line in (run.stderr + run.stdout).splitlines()
                     if line.lower().startswith("error")]
            reason = lines[-1] if lines else "no image series (localizers and derived " \
                                            "images are skipped)"
            raise ValueError(f"{folder}: dcm2niix converted nothing: {reason.rstrip('.')}.")
        paths = []
        for name in written:
            target = os.path.join(destination, name)
            if target in claimed:
                raise ValueError(f"{claimed[target]} and {folder} both convert to {name}: "
                                 "rename one of the folders.")
            claimed[target] = str(folder)
            sidecar = name[:-len(".nii.gz")] + ".json"
            if os.path.exists(os.path.join(work, sidecar)):
                os.replace(os.path.join(work, sidecar), os.path.join(destination, sidecar))
            os.replace(os.path.join(work, name), target)
            paths.append(target)
    return paths
