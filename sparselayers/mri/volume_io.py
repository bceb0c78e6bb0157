"""Reading and writing 3-D volumes: NIfTI / MGH through nibabel, NumPy arrays.

`read_volume` checks what it reads (a readable 3-D volume with finite,
non-constant voxels) and says which file is at fault; `write_volume` writes
an output in the grid and header of the volume it was computed from, under a
temporary name first and renamed when complete, so a stopped run never leaves
a half-written file, and it never overwrites its input.

nibabel is needed for NIfTI (``.nii``, ``.nii.gz``) and MGH (``.mgz``); it is
in the ``mri`` extra (``pip install ".[mri]"`` from a clone of the repository).
"""

import dataclasses
import json
import os

import numpy as np

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUFFIXES = NIFTI_SUFFIXES + (".mgz", ".npy", ".npz")
GZIP_SUFFIXES = (".nii.gz", ".mgz")


@dataclasses.dataclass
class Volume:
    """A 3-D volume as read from a file.

    Attributes:
        path: the file it was read from.
        data: float32 (X, Y, Z) voxel values in the file's units (the
            header's scaling applied).
        affine: (4, 4) voxel-to-world matrix (the identity for NumPy files).
        zooms: voxel sizes (3,), from the affine.
        image: the nibabel image (its header is reused when writing), or None.
    """

    path: str
    data: np.ndarray
    affine: np.ndarray
    zooms: np.ndarray
    image: object = None


def volume_suffix(path):
    """The file's recognised suffix (".nii.gz", ".npy", ...), or None."""
    name = str(path).lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return None


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise ImportError(
            "Reading NIfTI/MGH volumes needs nibabel: pip install \".[mri]\" (from a clone of "
            "sparselayers), or pip install nibabel."
        ) from None
    return nibabel


def read_volume(path, key=None):
    """Reads a 3-D volume and checks it.

    Args:
        path: ``.nii``, ``.nii.gz``, ``.mgz``, ``.npy`` or ``.npz``.
        key: the array's name in an ``.npz`` holding several arrays (one with a
            single array needs none).

    Returns:
        A `Volume`.

    Raises:
        ValueError: naming the file, if it is not a readable volume (a
            compressed file whose checksum fails included), not 3-D
            (trailing axes of size 1 are dropped), holds NaN or Inf voxels,
            or is constant (all zero included).
    """
    path = str(path)
    suffix = volume_suffix(path)
    if suffix is None:
        raise ValueError(f"{path}: not a volume file (expected one of {', '.join(SUFFIXES)}).")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file.")
    image = None
    try:
        if suffix in (".npy", ".npz"):
            data = _read_numpy(path, key)
            affine = np.eye(4)
        else:
            nibabel = _nibabel()
            if suffix in GZIP_SUFFIXES:
                _check_gzip(path)
            image = nibabel.load(path)
            data = np.asarray(image.dataobj)
            if data.dtype.kind not in "fiub":
                raise ValueError(f"voxel type {data.dtype} is not numeric")
            data = image.get_fdata(dtype=np.float32)
            affine = np.asarray(image.affine, np.float64)
    except ImportError:
        raise
    except Exception as error:  # nibabel and NumPy raise many kinds
        raise ValueError(f"{path}: not a readable volume ({error}).") from None
    data = np.asarray(data)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume; found shape {data.shape}.")
    if data.dtype.kind not in "fiub":
        raise ValueError(f"{path}: voxel type {data.dtype} is not numeric.")
    data = data.astype(np.float32, copy=False)
    bad = np.count_nonzero(~np.isfinite(data))
    if bad:
        raise ValueError(f"{path}: {bad} voxels are NaN or Inf; the volume must be finite "
                         "(missing slices are stored as zero or constant slices).")
    if data.min() == data.max():
        raise ValueError(f"{path}: every voxel equals {data.min():g}; nothing was acquired.")
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return Volume(path, data, affine, zooms, image)


def _check_gzip(path):
    """Reads a gzip file to its end, so that its CRC and length are checked.

    nibabel reads only the bytes it needs and never checks them, so one
    flipped bit in a ``.nii.gz`` gives wrong voxels without a word. Python's
    gzip checks each member's CRC-32 at its end (one pass, 16 MiB at a time).
    (``.npz`` needs no such pass: `zipfile` checks each member's CRC-32 as
    NumPy reads it.)
    """
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"damaged compressed file: {error}") from None


def read_sidecar(path):
    """The JSON sidecar of a volume file (``scan.nii.gz`` -> ``scan.json``), or {}.

    dcm2niix and BIDS write one beside each NIfTI, with the acquisition's
    ``SliceThickness`` and ``SpacingBetweenSlices`` (mm): the two differ when
    a scan has gaps between its slices, and NIfTI's header keeps only the
    spacing (its voxel size).

    Raises:
        ValueError: naming the sidecar, if it exists but is not a JSON object.
    """
    import json

    suffix = volume_suffix(path)
    sidecar = str(path)[:-len(suffix)] + ".json" if suffix else None
    if sidecar is None or not os.path.isfile(sidecar):
        return {}
    try:
        with open(sidecar, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"{sidecar}: not a readable JSON sidecar ({error}).") from None
    if not isinstance(content, dict):
        raise ValueError(f"{sidecar}: a JSON sidecar holds an object; found "
                         f"{type(content).__name__}.")
    return content


def _read_numpy(path, key):
    if path.lower().endswith(".npy"):
        return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.keys())
        if key is None:
            if len(names) != 1:
                raise ValueError(f"it holds {len(names)} arrays ({', '.join(names)}): name the "
                                 "volume's key")
            key = names[0]
        if key not in names:
            raise ValueError(f"no array {key!r} in it (it holds {', '.join(names)})")
        return archive[key]


def write_volume(path, data, like, affine=None):
    """Writes `data` in the grid and header of the volume `like`, atomically.

    The file is written under a temporary name in the destination folder and
    renamed when complete. NIfTI and MGH outputs keep `like`'s header (so its
    orientation, units and descriptions), with float32 voxels and no scaling.

    Args:
        path: destination; its suffix chooses the format (as `read_volume`).
        data: (X, Y, Z) array.
        like: the `Volume` the data was computed from.
        affine: the output's affine; default `like.affine` (pass another when
            the grid was refined, as for thick-slice files).

    Raises:
        ValueError: if `path` is `like`'s own file (an input is never
            overwritten) or has no recognised suffix.
    """
    path = str(path)
    if os.path.exists(path) and os.path.samefile(path, like.path):
        raise ValueError(f"{path}: the output would overwrite its input.")
    suffix = volume_suffix(path)
    if suffix is None:
        raise ValueError(f"{path}: not a volume file name (use one of {', '.join(SUFFIXES)}).")
    data = np.asarray(data, np.float32)
    affine = like.affine if affine is None else np.asarray(affine)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.partial{suffix}")
    try:
        if suffix == ".npy":
            with open(temporary, "wb") as handle:
                np.save(handle, data)
        elif suffix == ".npz":
            with open(temporary, "wb") as handle:
                np.savez_compressed(handle, volume=data)
        else:
            nibabel = _nibabel()
            header = like.image.header.copy() if like.image is not None else None
            if suffix == ".mgz":
                image = nibabel.MGHImage(data, affine, header=header if isinstance(
                    like.image, nibabel.MGHImage) else None)
            else:
                image = nibabel.Nifti1Image(data, affine, header=header if isinstance(
                    like.image, nibabel.Nifti1Image) else None)
                image.header.set_data_dtype(np.float32)
                image.header.set_slope_inter(1.0, 0.0)
                if header is not None:
                    # Keep the input's qform/sform codes, not just its matrix;
                    # on a refined grid the matrices are the refined affine.
                    same = np.array_equal(affine, like.affine)
                    for form in ("qform", "sform"):
                        code = int(like.image.header[f"{form}_code"])
                        matrix = getattr(like.image, f"get_{form}")() if same else affine
                        getattr(image, f"set_{form}")(matrix, code)
            nibabel.save(image, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(path, content):
    """Writes `content` as indented JSON under a temporary name, then renames it."""
    temporary = os.path.join(os.path.dirname(str(path)), ".partial." + os.path.basename(str(path)))
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(content, file, indent=2)
        file.write("\n")
    os.replace(temporary, path)
