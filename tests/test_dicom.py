"""DICOM series in (`sparselayers.mri.dicom`): synthetic series written by pydicom
(tests/dicom_series.py), converted by dcm2niix, checked against the DICOM
standard's own pixel-to-world mapping, and run through the workflow."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pydicom")
pytest.importorskip("nibabel")

from sparselayers import mri  # noqa: E402
from sparselayers.mri import dicom  # noqa: E402
from sparselayers.mri.inputs import PreparedVolume  # noqa: E402
from tests.dicom_series import dicom_to_world  # noqa: E402
from tests.dicom_series import phantom  # noqa: E402
from tests.dicom_series import write_series  # noqa: E402

try:
    dicom.dcm2niix_command()
except ImportError:
    pytest.skip("dcm2niix is not installed", allow_module_level=True)

SHAPE = (40, 36, 10)   # columns, rows, slices


def dicom_voxel_indices(geometry, world):
    """(column, row, slice) indices of RAS world points (..., 3), from the DICOM geometry."""
    row_spacing, column_spacing = geometry["pixel_spacing"]
    to_world = np.eye(4)
    to_world[:3, 0] = geometry["row"] * column_spacing
    to_world[:3, 1] = geometry["column"] * row_spacing
    to_world[:3, 2] = geometry["positions"][1] - geometry["positions"][0]
    to_world[:3, 3] = geometry["positions"][0]
    to_world[:2] *= -1   # LPS -> RAS
    points = np.concatenate([world, np.ones(world.shape[:-1] + (1,))], axis=-1)
    return (points @ np.linalg.inv(to_world).T)[..., :3]


def test_converted_series_puts_every_pixel_where_the_dicom_header_says(tmp_path):
    import nibabel

    volume = phantom(SHAPE)
    geometry = write_series(tmp_path / "patient" / "series3", volume)
    write_series(tmp_path / "patient" / "series4", phantom(SHAPE, seed=1), series_number=4,
                 description="T1 AX")
    paths = dicom.convert_dicom_folder(tmp_path / "patient", tmp_path / "converted")
    assert [os.path.basename(p) for p in paths] == ["patient_3_T2_AX_THICK.nii.gz",
                                                    "patient_4_T1_AX.nii.gz"]
    image = nibabel.load(paths[0])
    data = np.asanyarray(image.dataobj)
    assert data.shape == SHAPE
    # Every NIfTI voxel's world position, mapped back through the DICOM header,
    # lands on a pixel centre holding the same value.
    index = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    world = nibabel.affines.apply_affine(image.affine, index)
    source = dicom_voxel_indices(geometry, world)
    np.testing.assert_allclose(source, np.round(source), atol=1e-3)
    column, row, slice_ = np.round(source).astype(int).transpose(3, 0, 1, 2)
    assert np.array_equal(data, volume[column, row, slice_])
    # The spacing between slices is the voxel size; the thickness is in the sidecar.
    np.testing.assert_allclose(image.header.get_zooms(), (0.9, 0.9, 5.0), rtol=1e-5)
    with open(paths[0][:-len(".nii.gz")] + ".json") as file:
        sidecar = json.load(file)
    assert sidecar["SliceThickness"] == 4 and sidecar["SpacingBetweenSlices"] == 5
    # A gap (4 mm slices 5 mm apart) gives a 4 mm box profile at a 5 mm spacing.
    prepared = PreparedVolume(paths[0])
    fine = float(prepared.zooms[2]) * prepared.slice_grid.source_step
    assert prepared.axis == 2 and prepared.thick
    assert prepared.slice_grid.profile.kind == "box"
    np.testing.assert_allclose(prepared.slice_grid.profile.thickness * fine, 4.0, rtol=1e-6)
    np.testing.assert_allclose(prepared.slice_grid.spacing * fine, 5.0, rtol=1e-6)
    # Converting again replaces the files (no dcm2niix "a" suffix).
    again = dicom.convert_dicom_folder(tmp_path / "patient", tmp_path / "converted")
    assert again == paths
    assert sorted(os.listdir(tmp_path / "converted")) == sorted(
        os.path.basename(p)[:-len(".nii.gz")] + suffix for p in paths
        for suffix in (".json", ".nii.gz"))


def test_dicom_folder_through_the_workflow(tmp_path, capsys):
    import nibabel

    volume = phantom(SHAPE)
    geometry = write_series(tmp_path / "scan", volume)
    out = tmp_path / "out"
    # Point samples: the refined grid keeps every acquired voxel exactly.
    written = mri.impute_slices([tmp_path / "scan"], out, steps=3, steps_per_epoch=3,
                                patch_size=16, filters=4, slice_profile="point",
                                montage=False)
    converted = str(out / "converted" / "scan_3_T2_AX_THICK.nii.gz")
    assert list(written) == [converted]
    assert written[converted] == str(out / "scan_3_T2_AX_THICK_imputed.nii.gz")
    image = nibabel.load(written[converted])
    result = image.get_fdata(dtype=np.float32)
    assert np.isfinite(result).all() and result.min() >= 0
    index = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1)
    fine = np.linalg.solve(image.affine, np.concatenate(
        [dicom_to_world(geometry, index[..., 0], index[..., 1], index[..., 2]),
         np.ones(SHAPE + (1,))], axis=-1)[..., None])[..., :3, 0]
    np.testing.assert_allclose(fine, np.round(fine), atol=1e-3)
    i, j, k = np.round(fine).astype(int).transpose(3, 0, 1, 2)
    assert np.array_equal(result[i, j, k], volume.astype(np.float32))
    capsys.readouterr()

    # The default box profile, the same model: the thickness read from the
    # series (4 mm, a 1 mm gap), the fine grid covering the slab.
    written = mri.impute_slices([tmp_path / "scan"], tmp_path / "box",
                                model=str(out / "model.keras"), montage=False)
    assert "10 slices 5 mm apart, box profile 4 mm thick" in capsys.readouterr().out
    restored = nibabel.load(written[str(tmp_path / "box" / "converted" /
                                        "scan_3_T2_AX_THICK.nii.gz")])
    converted_affine = nibabel.load(converted).affine
    np.testing.assert_allclose(restored.affine[:3, :2], converted_affine[:3, :2], atol=1e-5)
    slice_column = restored.affine[:3, 2]
    np.testing.assert_allclose(np.linalg.norm(slice_column), 0.9, rtol=1e-5)
    normal = geometry["normal"] * np.array([-1, -1, 1])
    np.testing.assert_allclose(slice_column / 0.9, normal, atol=1e-5)
    # The slab: 9 spacings + one thickness = 49 mm, centred between the
    # first and last slice centres (the converted affine, checked against the
    # DICOM header in the test above).
    count = restored.shape[2]
    assert abs(count * 0.9 - 49.0) <= 0.9
    centre = restored.affine @ np.array([0, 0, (count - 1) / 2, 1.0])
    slab_centre = (converted_affine @ [0, 0, 0, 1.0] + converted_affine @ [0, 0, 9, 1.0]) / 2
    np.testing.assert_allclose(centre[:3], slab_centre[:3], atol=1e-3)
    assert np.isfinite(restored.get_fdata()).all()


def test_dicom_mistakes_are_named(tmp_path, monkeypatch):
    write_series(tmp_path / "good", phantom(SHAPE))
    # A file that says DICM but holds no image.
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "IM0001.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\1" * 64)
    with pytest.raises(ValueError, match="broken: dcm2niix converted nothing"):
        mri.impute_slices([tmp_path / "broken"], tmp_path / "out", steps=2)
    with pytest.raises(ValueError, match="IM0001.dcm: a DICOM file; give the folder"):
        mri.impute_slices([tmp_path / "good" / "IM0001.dcm"], tmp_path / "out", steps=2)
    # Two folders converting to the same name.
    write_series(tmp_path / "other" / "good", phantom(SHAPE, seed=2))
    with pytest.raises(ValueError, match="both convert to good_3_T2_AX_THICK.nii.gz"):
        mri.impute_slices([tmp_path / "good", tmp_path / "other" / "good"], tmp_path / "out",
                          steps=2)
    # No dcm2niix anywhere.
    monkeypatch.setitem(sys.modules, "dcm2niix", None)
    monkeypatch.setattr(dicom.shutil, "which", lambda name: None)
    with pytest.raises(ImportError, match="needs dcm2niix"):
        mri.impute_slices([tmp_path / "good"], tmp_path / "out2", steps=2)


@pytest.mark.process
def test_command_line_reports_a_bad_dicom_folder_in_one_line(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.dcm").write_bytes(b"\0" * 128 + b"DICM")
    command = os.path.join(os.path.dirname(sys.executable), "sparselayers-impute-slices")
    run = subprocess.run([command, str(tmp_path / "broken"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken: dcm2niix converted nothing" in lines[0], run.stderr
