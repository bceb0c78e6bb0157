"""The workflow's inputs: files and folders in, each volume read and checked.

`list_inputs` expands folders (a folder of DICOM series is converted by
dcm2niix, `sparselayers.mri.dicom`), `output_paths` and `spread_path` name each
input's outputs (`check_output_names` refuses clashes), and `PreparedVolume`
holds what training and imputation need of one input (its acquisition on the
fine grid, its in-plane pixel size) without keeping its voxels in memory;
`SliceStacks` reads their training slices on demand.

Example:

>>> prepared = [PreparedVolume(path) for path in list_inputs(["scans/"])]
>>> prepared[0].acquisition.every
3
"""

import functools
import os

import numpy as np

from sparselayers.mri import acquisition as acquisition_module
from sparselayers.mri import dicom
from sparselayers.mri import intensity
from sparselayers.mri import slice_grid
from sparselayers.mri import training
from sparselayers.mri import volume_io
from sparselayers.mri.slice_profile import SliceProfile

__all__ = ["list_inputs", "output_paths", "spread_path", "default_names", "check_output_names",
           "resolve_axis",
           "PreparedVolume", "SliceStacks"]

ANATOMICAL_AXES = {"sagittal": "LR", "coronal": "PA", "axial": "IS"}


def list_inputs(inputs, converted=None):
    """Files from paths and folders (their volume files, sorted).

    A folder without volume files that holds DICOM files (sub-folders too)
    is converted by dcm2niix into `converted` (`sparselayers.mri.dicom`),
    each of its series becoming one NIfTI input.
    """

    files, claimed = [], {}
    for path in inputs:
        path = str(path)
        if os.path.isdir(path):
            found = sorted(os.path.join(path, name) for name in os.listdir(path)
                           if volume_io.volume_suffix(name) and not name.startswith("."))
            if not found and dicom.holds_dicom(path):
                if converted is None:
                    raise ValueError(f"{path}: holds DICOM files; convert them with "
                                     "sparselayers.mri.dicom.convert_dicom_folder first.")
                found = dicom.convert_dicom_folder(path, converted, claimed)
            if not found:
                raise ValueError(f"{path}: no volume files or DICOM series in this folder.")
            files += found
        elif dicom.is_dicom_file(path):
            raise ValueError(f"{path}: a DICOM file; give the folder holding its series.")
        else:
            files.append(path)
    if not files:
        raise ValueError("No input volumes.")
    return files


def output_paths(path, out):
    """(imputed volume, montage) paths in `out` for the input `path`."""

    suffix = volume_io.volume_suffix(path)
    if suffix is None:
        raise ValueError(f"{path}: not a volume file (expected one of "
                         f"{', '.join(volume_io.SUFFIXES)}).")
    stem = os.path.basename(path)[:-len(suffix)]
    return (os.path.join(out, f"{stem}_imputed{suffix}"),
            os.path.join(out, f"{stem}_montage.png"))


def spread_path(path, out):
    """The path in `out` of the input's per-voxel standard deviation (sparse VAE models)."""
    imputed_path, _ = output_paths(path, out)
    suffix = volume_io.volume_suffix(path)
    return imputed_path[:-len(suffix) - len("_imputed")] + "_std" + suffix


def draw_path(std_path, index):
    """The path of multiple imputation `index` (1, 2...) beside the std volume.

    ``<name>_std.nii.gz`` -> ``<name>_draw-01.nii.gz``; a BIDS
    ``..._desc-imputedstd_T1w.nii.gz`` -> ``..._desc-imputeddraw01_T1w.nii.gz``
    (a BIDS label is alphanumeric).
    """
    folder, base = os.path.split(std_path)
    at = base.rindex("std")
    tag = f"draw-{index:02d}" if base[at - 1] == "_" else f"draw{index:02d}"
    return os.path.join(folder, base[:at] + tag + base[at + 3:])


def default_names(path, out):
    """(imputed volume, montage, std volume) paths in `out` for the input `path`."""
    imputed_path, montage_path = output_paths(path, out)
    return imputed_path, montage_path, spread_path(path, out)


def check_output_names(files, out, montage=True, names=default_names):
    """input path -> imputed path; ValueError if two outputs clash or one is an input.

    `names(path, out)` gives an input's (imputed, montage, std) paths
    (`default_names`; `sparselayers.mri.bids` names BIDS derivatives).
    """
    outputs, claimed = {}, {}
    inputs = {os.path.abspath(path): path for path in files}
    for path in files:
        imputed_path, montage_path, std_path = names(path, out)
        for target in (imputed_path, std_path) + ((montage_path,) if montage else ()):
            key = os.path.abspath(target)
            if key in inputs:
                raise ValueError(f"{target}: an output would overwrite an input; choose another "
                                 "--out.")
            if key in claimed:
                raise ValueError(f"{claimed[key]} and {path} would both write {target}: rename "
                                 "one, or run them into different --out folders.")
            claimed[key] = path
        outputs[path] = imputed_path
    return outputs


def resolve_axis(axis, volume):
    """An int axis from 0/1/2 or an anatomical name, through the volume's affine."""
    if axis is None:
        return None
    text = str(axis).lower()
    if text in ("0", "1", "2"):
        return int(text)
    if text not in ANATOMICAL_AXES:
        raise ValueError(f"--axis must be 0, 1, 2, sagittal, coronal or axial; received {axis!r}.")
    import nibabel

    codes = nibabel.aff2axcodes(volume.affine)
    for index, code in enumerate(codes):
        if code in ANATOMICAL_AXES[text]:
            return index
    raise ValueError(f"{volume.path}: no {text} axis in its orientation {codes}.")


class PreparedVolume:
    """One checked input: where its acquired slices are, how, and its scaling.

    Nothing of the volume's voxels is kept: `load` and `slices` read the file
    again. With a point profile (missing slices stored as zero slices, or a
    thick-slice file taken as point samples) the volume is imputed on its own
    (or n-fold refined) grid with `imputation.impute_volume`; with a box or
    Gaussian profile (the default for thick voxels in the header) it is
    restored on the fine `slice_grid` with `imputation.restore_volume`.

    Args:
        path: the volume file.
        axis, every, key: as `impute_slices`'.
        slice_profile: "point", "box", "gaussian", or None: "box" for thick
            voxels in the header, "point" for missing slices stored as zero
            slices.
        slice_thickness: mm, or None: the JSON sidecar's ``SliceThickness``
            (as dcm2niix and BIDS write it) if there is one, else the spacing.
        resolution: mm of the fine voxels along the axis of a thick-slice
            file restored with a box or Gaussian profile; None: the finest
            in-plane voxel size.

    Attributes:
        affine: (4, 4) the input's voxel-to-world matrix.
        acquisition: the `Acquisition` on the grid imputation works on.
        slice_grid: the `SliceGrid` (box and Gaussian profiles), else None.
        sampling: the `training.RowSampling` its training patches simulate.
    """

    def __init__(self, path, axis=None, every=None, key=None, slice_profile=None,
                 slice_thickness=None, resolution=None):
        volume = volume_io.read_volume(path, key=key)
        acquisition = acquisition_module.find_acquisition(
            volume.data, volume.zooms, axis=resolve_axis(axis, volume), every=every, name=path)
        self.path = path
        self.key = key
        self.shape = volume.data.shape
        self.zooms = volume.zooms
        self.affine = np.asarray(volume.affine, np.float64)
        self.axis, self.every = acquisition.axis, acquisition.every
        self.thick = acquisition.thick
        kind = slice_profile if slice_profile is not None else (
            "box" if acquisition.thick else "point")
        SliceProfile(kind, 1.0)  # checks the name
        in_plane = [float(self.zooms[i]) for i in range(3) if i != self.axis]
        self.slice_grid = None
        if kind == "point":
            for name, value in (("slice thickness", slice_thickness),
                                ("resolution", resolution)):
                if value is not None:
                    raise ValueError(f"{path}: a {name} is for box or Gaussian slice profiles; "
                                     "point samples have none (give --slice-profile).")
            data, _, acquisition = self.grid(volume, acquisition)
            self.acquisition = acquisition
            self.sampling = training.RowSampling(acquisition.every)
            through = self.zooms[self.axis] / (self.every if self.thick else 1)
        else:
            self.acquisition = acquisition
            data = volume.data
            voxel = float(self.zooms[self.axis])
            spacing = voxel if self.thick else voxel * acquisition.every
            if slice_thickness is None:
                slice_thickness = volume_io.read_sidecar(path).get("SliceThickness", spacing)
            profile = SliceProfile(kind, slice_thickness)
            if self.thick:
                through = min(in_plane) if resolution is None else resolution
                self.slice_grid = slice_grid.thick_slice_grid(
                    self.shape[self.axis], self.axis, spacing, through, profile, name=path)
            else:
                if resolution is not None:
                    raise ValueError(f"{path}: its missing slices are stored in its own grid, "
                                     "which is kept; --resolution is for thick-slice files.")
                through = voxel
                self.slice_grid = slice_grid.detected_slice_grid(acquisition.acquired,
                                                                 self.axis, voxel, profile)
            self.sampling = training.RowSampling(self.slice_grid.spacing,
                                                 self.slice_grid.profile)
        intensity.normalize(data, self.acquisition)  # raises if the acquired voxels are constant
        # In-plane voxel size over the fine through-plane spacing: the
        # training slices are resampled by this so that their pixels match
        # the cuts' (1 for isotropic volumes).
        self.in_plane_ratio = [size / through for size in in_plane]

    def grid(self, volume, acquisition=None):
        """(data, affine, acquisition) on the grid imputation works on (point profile)."""
        if acquisition is None:
            acquisition = self.acquisition if not self.thick else acquisition_module.Acquisition(
                self.axis, np.ones(self.shape[self.axis], bool), self.every, thick=True)
        if self.thick and self.slice_grid is None:
            return acquisition_module.refine_thick_slices(volume.data, volume.affine, acquisition)
        return volume.data, volume.affine, acquisition

    def fine_shape(self):
        """The shape of the volume written for this input."""
        if self.slice_grid is not None:
            return self.slice_grid.fine_shape(self.shape)
        shape = list(self.shape)
        shape[self.axis] = len(self.acquisition.acquired)
        return tuple(shape)

    def slice_shape(self):
        """(P, Q): the size of its training slices (in-plane, resampled as `slices`)."""
        in_plane = [size for axis, size in enumerate(self.shape) if axis != self.axis]
        if max(abs(r - 1.0) for r in self.in_plane_ratio) > 0.1:
            # scipy.ndimage.zoom's output size
            return tuple(int(round(size * r)) for size, r in zip(in_plane, self.in_plane_ratio))
        return tuple(in_plane)

    def load(self):
        """(the `Volume`, its data on the working grid, the output's affine)."""
        volume = volume_io.read_volume(self.path, key=self.key)
        data, affine, _ = self.grid(volume)
        if self.slice_grid is not None:
            affine = self.slice_grid.affine(volume.affine)
        return volume, data, affine

    def slices(self):
        """Its acquired slices, normalised and resampled to isotropic pixels."""
        _, data, _ = self.load()
        scaled, _ = intensity.normalize(data, self.acquisition)
        stack = training.acquired_slices(scaled, self.acquisition)
        if max(abs(r - 1.0) for r in self.in_plane_ratio) > 0.1:
            from scipy import ndimage

            stack = np.stack([ndimage.zoom(s, self.in_plane_ratio, order=1) for s in stack])
        return stack


class SliceStacks:
    """The inputs' acquired slices, read from their files when indexed.

    At most `CACHED` volumes' slices are held at a time, so training memory
    does not grow with the collection.

    Args:
        prepared: the `PreparedVolume` list.
        held_out: None, or per volume the indices of its acquired slices left
            out (`self_validation.held_out_slices`): never trained on.
    """

    CACHED = 4

    def __init__(self, prepared, held_out=None):
        self.prepared = prepared

        def read(index):
            stack = prepared[index].slices()
            if held_out is not None and len(held_out[index]):
                stack = np.delete(stack, held_out[index], axis=0)
            return stack

        self.read = functools.lru_cache(maxsize=self.CACHED)(read)

    def __len__(self):
        return len(self.prepared)

    def __getitem__(self, index):
        return self.read(index)
