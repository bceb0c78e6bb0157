"""Synthetic DICOM series written with pydicom, for the DICOM and BIDS tests.

`write_series` stores a (columns, rows, slices) int16 volume as one MR Image
Storage file per slice, with the geometry a scanner writes: pixel spacing,
slice thickness, spacing between slices (a gap when larger than the
thickness) and an oblique orientation. `dicom_to_world` is the DICOM
standard's own pixel-to-patient mapping (C.7.6.2.1.1), converted from LPS to
the RAS+ world of NIfTI: the tests' reference, independent of dcm2niix.
"""

import os

import numpy as np


def oblique_directions(about_z_degrees=15.0, tilt_radians=0.2):
    """(row direction, column direction): orthonormal LPS unit vectors, oblique."""
    angle = np.deg2rad(about_z_degrees)
    row = np.array([np.cos(angle), np.sin(angle), 0.0])
    column = np.array([-np.sin(angle) * np.cos(tilt_radians),
                       np.cos(angle) * np.cos(tilt_radians), np.sin(tilt_radians)])
    column -= row * np.dot(row, column)
    return row, column / np.linalg.norm(column)


def write_series(folder, volume, pixel_spacing=(0.9, 0.9), thickness=4.0, spacing=5.0,
                 directions=None, origin=(-20.0, -15.0, 10.0), series_number=3,
                 description="T2 AX THICK"):
    """Writes `volume` (columns, rows, slices) as a DICOM series in `folder`.

    Returns:
        dict of the geometry: ``row``, ``column``, ``normal`` (LPS unit
        vectors), ``positions`` (slices, 3) LPS ImagePositionPatient,
        ``pixel_spacing`` (row spacing, column spacing).
    """
    from pydicom.dataset import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    from pydicom.uid import MRImageStorage
    from pydicom.uid import generate_uid

    os.makedirs(folder, exist_ok=True)
    row, column = oblique_directions() if directions is None else directions
    normal = np.cross(row, column)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    positions = np.asarray(origin, float) + np.arange(volume.shape[2])[:, None] * spacing * normal
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "MR"
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientID = "0001"
        ds.PatientPosition = "HFS"
        ds.StudyDate = ds.SeriesDate = "20261201"
        ds.AcquisitionTime = "120000.00"
        ds.Manufacturer = "Synthetic"
        ds.SeriesDescription = ds.ProtocolName = description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.MagneticFieldStrength = 3
        ds.EchoTime, ds.RepetitionTime = 90, 4000
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([row, column])]
        ds.ImagePositionPatient = [float(v) for v in positions[k]]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = float(thickness)
        ds.SpacingBetweenSlices = float(spacing)
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        # PixelData is row-major: (rows, columns) = the slice transposed.
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T.astype("<i2")).tobytes()
        ds.save_as(os.path.join(folder, f"IM{k + 1:04d}.dcm"), enforce_file_format=True)
    return {"row": row, "column": column, "normal": normal, "positions": positions,
            "pixel_spacing": np.asarray(pixel_spacing, float)}


def dicom_to_world(geometry, column_index, row_index, slice_index):
    """RAS+ world position (mm) of a pixel (C.7.6.2.1.1, then LPS -> RAS)."""
    row_spacing, column_spacing = geometry["pixel_spacing"]
    lps = (geometry["positions"][slice_index]
           + np.multiply.outer(column_index, geometry["row"] * column_spacing)
           + np.multiply.outer(row_index, geometry["column"] * row_spacing))
    return lps * np.array([-1.0, -1.0, 1.0])


def phantom(shape, seed=0):
    """A smooth int16 head-like volume (a bright ellipsoid, texture inside), >= 0."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = sum((g / 0.85) ** 2 for g in grids)
    texture = sum(np.sin(3.0 * g * rng.uniform(1, 3) + rng.uniform(0, 6)) for g in grids)
    volume = np.where(radius < 1.0, 600 + 150 * texture, 20)
    return np.round(volume + rng.normal(0, 5, shape)).clip(0).astype(np.int16)
