"""Thick slices as scanners acquire them (issue 20): profile, grid, consistency, workflow."""

import math
import subprocess
import sys

import numpy as np
import pytest

from sparselayers.mri import slice_profile
from sparselayers.mri import training
from sparselayers.mri.slice_grid import thick_slice_grid
from sparselayers.mri.slice_profile import SliceProfile

nibabel = pytest.importorskip("nibabel")


def reference_weights(kind, thickness, centre, size, samples=20000):
    """W[k] by brute force: the profile's density sampled densely over each voxel.

    Independent of the closed forms: the profile is a function of z evaluated
    on `samples` points per voxel, each voxel's weight the mean over its
    points, the row normalised over the grid.
    """
    offsets = (np.arange(samples) + 0.5) / samples - 0.5
    weights = np.zeros(size)
    for voxel in range(size):
        z = voxel + offsets
        if kind == "box":
            density = (np.abs(z - centre) <= thickness / 2).astype(float)
        else:
            sigma = thickness / (2 * math.sqrt(2 * math.log(2)))
            density = np.exp(-0.5 * ((z - centre) / sigma) ** 2)
            density[np.abs(z - centre) > 4 * sigma] = 0.0  # the documented cut
        weights[voxel] = density.mean()
    return weights / weights.sum()


@pytest.mark.parametrize("kind, thickness, centres", [
    ("box", 6.0, [2.5, 8.5, 14.5]),            # thickness = spacing, centres between voxels
    ("box", 4.0, [3.0, 9.0, 15.0]),            # a gap: 4 thick, 6 apart
    ("box", 9.0, [4.2, 10.2]),                 # overlap, sub-voxel centres
    ("gaussian", 6.0, [2.5, 8.5, 14.5]),
    ("gaussian", 3.0, [1.3, 7.3, 13.3]),       # a gap between Gaussian slices
])
def test_forward_matrix_matches_dense_integration(kind, thickness, centres):
    size = 18
    weights = slice_profile.forward_matrix(SliceProfile(kind, thickness), centres, size)
    for row, centre in zip(weights, centres):
        np.testing.assert_allclose(row, reference_weights(kind, thickness, centre, size),
                                   atol=2e-4)
    if kind == "box" and thickness < 6:  # a gap: some voxels belong to no slice
        assert np.any(weights.sum(axis=0) == 0)


def test_point_profile_is_the_value_at_the_centre():
    column = np.random.default_rng(0).normal(size=12)
    weights = slice_profile.forward_matrix(SliceProfile("point"), [0.0, 3.0, 7.25], 12)
    np.testing.assert_allclose(weights @ column, np.interp([0.0, 3.0, 7.25], np.arange(12),
                                                           column), rtol=1e-12)


def test_row_mask_tells_the_position_between_slices():
    centres = [1.5, 7.5, 13.5]
    mask = slice_profile.row_mask(centres, 16)
    for row in range(16):
        distance = min(abs(row - c) for c in centres)
        expected = 0.52 + 0.48 * 0.5 * (1 + math.cos(math.pi * min(distance / 3.0, 1.0)))
        assert mask[row] == pytest.approx(expected, abs=1e-6)
    assert mask.min() > 0.5  # every row counts as observed


def test_simulated_rows_match_a_numpy_loop():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(30, 5))
    upsampled, slices, centres = slice_profile.simulate_rows(image, SliceProfile("box", 3.0),
                                                             3.0, 1.0)
    # Box slices 3 rows thick centred on rows 1, 4, 7, ...: the mean of rows c-1..c+1.
    np.testing.assert_array_equal(centres, np.arange(1.0, 29.5, 3.0))
    for k, centre in enumerate(centres.astype(int)):
        np.testing.assert_allclose(slices[k], image[max(centre - 1, 0):centre + 2].mean(axis=0))
    for column in range(5):
        np.testing.assert_allclose(upsampled[:, column],
                                   np.interp(np.arange(30), centres, slices[:, column]),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, thickness", [("box", 6.0), ("box", 4.0), ("box", 9.0),
                                             ("gaussian", 6.0)])
def test_projection_reproduces_the_acquired_slices(kind, thickness):
    rng = np.random.default_rng(2)
    grid = thick_slice_grid(7, 1, 6.0, 1.0, SliceProfile(kind, thickness))
    acquired = rng.normal(100, 30, size=(5, 7, 4)).astype(np.float32)
    guess = rng.normal(100, 30, size=(5, grid.size, 4)).astype(np.float32)
    restored = slice_profile.project_onto_slices(guess, acquired, grid.forward_matrix(), axis=1)
    assert restored.dtype == np.float32 and restored.shape == guess.shape
    reproduced = np.stack([grid.forward_matrix() @ restored[i].astype(np.float64)
                           for i in range(5)])
    np.testing.assert_allclose(reproduced, acquired, rtol=0, atol=4 * np.spacing(np.float32(200)))
    # The minimum-norm correction: a guess already consistent is left as it is.
    again = slice_profile.project_onto_slices(restored, acquired, grid.forward_matrix(), axis=1)
    np.testing.assert_allclose(again, restored, atol=1e-4)


def test_grid_covers_the_slab_from_edge_to_edge():
    grid = thick_slice_grid(20, 2, 6.0, 1.0, SliceProfile("box", 6.0))
    assert grid.size == 120
    np.testing.assert_allclose(grid.centres, 2.5 + 6 * np.arange(20))
    gap = thick_slice_grid(20, 2, 6.0, 1.0, SliceProfile("box", 4.0))  # 19 * 6 + 4 mm
    assert gap.size == 118
    np.testing.assert_allclose(gap.centres[[0, -1]], [1.5, 115.5])
    odd = thick_slice_grid(10, 0, 5.0, 0.9, SliceProfile("gaussian", 5.0))
    assert odd.size == round(50 / 0.9)
    np.testing.assert_allclose(np.diff(odd.centres), 5 / 0.9)


@pytest.mark.parametrize("arguments, message", [
    (dict(profile=SliceProfile("box", 60.0)), "more than 4 times the slice spacing"),
    (dict(resolution=7.0), "coarser than the slice spacing"),
    (dict(resolution=0.0), "resolution must be a finite number > 0"),
    (dict(spacing=float("nan")), "slice spacing must be a finite number > 0"),
])
def test_grid_refuses_bad_geometry(arguments, message):
    settings = dict(count=10, axis=2, spacing=6.0, resolution=1.0,
                    profile=SliceProfile("box", 6.0))
    settings.update(arguments)
    with pytest.raises(ValueError, match=message):
        thick_slice_grid(**settings)


@pytest.mark.parametrize("kind, thickness, message", [
    ("box", 0.0, "slice thickness must be a finite number > 0"),
    ("gaussian", -2.0, "slice thickness must be a finite number > 0"),
    ("box", float("inf"), "slice thickness must be a finite number > 0"),
    ("trapezoid", 5.0, "slice profile must be one of point, box, gaussian"),
])
def test_profile_refuses_bad_values(kind, thickness, message):
    with pytest.raises(ValueError, match=message):
        SliceProfile(kind, thickness)


def test_training_patches_are_degraded_as_the_scan():
    rng = np.random.default_rng(3)
    slices = [rng.normal(1.0, 0.3, size=(60, 50)).astype(np.float32) for _ in range(3)]
    sampling = training.RowSampling(6.0, SliceProfile("box", 6.0))
    image, mask, truth, weight = training.sample_patches(slices, sampling, 16, 5, rng)
    assert image.shape == (5, 16, 16, 1) and weight.min() == 1
    # Every row observed (> 0.5), its mask constant along the row.
    assert mask.min() >= slice_profile.MIDWAY_MASK and mask.max() <= 1
    np.testing.assert_array_equal(mask, np.broadcast_to(mask[:, :, :1], mask.shape))
    # Each input column is piecewise linear between centres 6 rows apart (at
    # sub-row offsets): its 14 second differences vanish but for the two rows
    # around each of at most 3 centres.
    second = np.abs(np.diff(image[..., 0], 2, axis=1)) > 1e-4
    assert second.sum(axis=1).max() <= 6
    assert not np.allclose(image, truth)
    with pytest.raises(ValueError, match="every must be an int >= 2"):
        training.RowSampling(1)


# -- The workflow on files ----------------------------------------------------

def smooth_volume(shape, seed):
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), -1)
    inside = (grid ** 2).sum(-1) < 0.8
    noise = rng.normal(size=shape)
    for axis in range(3):
        noise = sum(np.roll(noise, shift, axis) for shift in (-2, -1, 0, 1, 2)) / 5
    return np.where(inside, 500 + 150 * noise / noise.std() + 200 * grid[..., 0], 0.0)


def write_thick(path, fine, axis, every, affine, codes=(1, 1)):
    """Box slices `every` fine voxels thick, written with the thick voxel size."""
    moved = np.moveaxis(fine, axis, 0)
    count = moved.shape[0] // every
    thick = moved[:count * every].reshape((count, every) + moved.shape[1:]).mean(axis=1)
    image = nibabel.Nifti1Image(np.moveaxis(thick, 0, axis).astype(np.float32), affine)
    image.set_qform(affine, codes[0])
    image.set_sform(affine, codes[1])
    image.header["descrip"] = b"thick test volume"
    nibabel.save(image, str(path))
    return np.moveaxis(thick, 0, axis)


def test_thick_file_restored_on_the_slab_grid_in_world_coordinates(tmp_path):
    from sparselayers import mri

    fine = smooth_volume((18, 20, 30), 4)
    # Oblique: a rotation about x, 1 mm in-plane, 5 mm slices along array axis 2.
    angle = 0.3
    rotation = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)],
                         [0, math.sin(angle), math.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.0, 1.0, 5.0])
    affine[:3, 3] = [-10.0, 4.0, 12.0]
    (tmp_path / "in").mkdir()
    thick = write_thick(tmp_path / "in" / "scan.nii.gz", fine, 2, 5, affine, codes=(1, 2))
    written = mri.impute_slices([tmp_path / "in"], tmp_path / "out", steps=4,
                                steps_per_epoch=2, patch_size=12, filters=2, verbose=0,
                                resolution=1.0)
    output = nibabel.load(written[str(tmp_path / "in" / "scan.nii.gz")])
    count = thick.shape[2]
    assert output.shape == (18, 20, 5 * count)
    # Where each fine voxel should be, from the input affine alone: the slab
    # starts half a slice before the first slice's centre, along the slice axis.
    direction = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    for i, j, k in [(0, 0, 0), (3, 7, 1), (17, 19, 5 * count - 1), (5, 2, 12)]:
        first_centre = affine[:3, :3] @ [i, j, 0] + affine[:3, 3]
        expected = first_centre - 2.5 * direction + (k + 0.5) * 1.0 * direction
        np.testing.assert_allclose(output.affine[:3, :3] @ [i, j, k] + output.affine[:3, 3],
                                   expected, atol=1e-9)
    assert int(output.header["qform_code"]) == 1 and int(output.header["sform_code"]) == 2
    assert output.header["descrip"].tobytes().startswith(b"thick test volume")
    # Data consistency in the file's units: box-averaging the output over each
    # slice's 5 fine voxels gives back the acquired slices (float32 rounding).
    data = output.get_fdata(dtype=np.float32).astype(np.float64)
    averaged = data.reshape(18, 20, count, 5).mean(axis=-1)
    np.testing.assert_allclose(averaged, thick, rtol=0, atol=2e-4 * np.abs(thick).max())


def test_mixed_collection_in_one_run(tmp_path):
    from sparselayers import mri

    (tmp_path / "in").mkdir()
    fine = smooth_volume((16, 18, 24), 5)
    write_thick(tmp_path / "in" / "a.nii.gz", fine, 2, 3, np.diag([1.0, 1.0, 3.0, 1.0]))
    write_thick(tmp_path / "in" / "b.nii.gz", fine, 0, 4, np.diag([4.0, 1.0, 1.0, 1.0]))
    sparse = np.where((np.arange(24) % 3 == 0)[None, None], fine, 0.0)
    nibabel.save(nibabel.Nifti1Image(sparse.astype(np.float32), np.eye(4)),
                 str(tmp_path / "in" / "c.nii.gz"))
    written = mri.impute_slices([tmp_path / "in"], tmp_path / "out", steps=4,
                                steps_per_epoch=2, patch_size=12, filters=2, verbose=0)
    shapes = {name: nibabel.load(written[str(tmp_path / "in" / name)]).shape
              for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz")}
    assert shapes == {"a.nii.gz": (16, 18, 24), "b.nii.gz": (16, 18, 24),
                      "c.nii.gz": (16, 18, 24)}
    c = nibabel.load(written[str(tmp_path / "in" / "c.nii.gz")]).get_fdata(dtype=np.float32)
    kept = np.arange(24) % 3 == 0
    assert np.array_equal(c[:, :, kept], sparse[:, :, kept].astype(np.float32))  # point: exact


def test_sidecar_thickness_and_gaussian_profile(tmp_path):
    import json

    from sparselayers.mri.inputs import PreparedVolume

    fine = smooth_volume((16, 18, 24), 6)
    write_thick(tmp_path / "scan.nii.gz", fine, 2, 4, np.diag([1.0, 1.0, 4.0, 1.0]))
    (tmp_path / "scan.json").write_text(json.dumps({"SliceThickness": 3.0,
                                                    "SpacingBetweenSlices": 4.0}))
    prepared = PreparedVolume(str(tmp_path / "scan.nii.gz"))
    assert prepared.slice_grid.profile == SliceProfile("box", 3.0)   # 1 mm fine voxels
    assert prepared.slice_grid.size == 5 * 4 + 3
    given = PreparedVolume(str(tmp_path / "scan.nii.gz"), slice_profile="gaussian",
                           slice_thickness=4.0, resolution=2.0)
    assert given.slice_grid.profile == SliceProfile("gaussian", 2.0)  # 2 mm fine voxels
    assert given.slice_grid.size == 12
    point = PreparedVolume(str(tmp_path / "scan.nii.gz"), slice_profile="point")
    assert point.slice_grid is None and point.acquisition.every == 4
    with pytest.raises(ValueError, match="point samples have none"):
        PreparedVolume(str(tmp_path / "scan.nii.gz"), slice_profile="point", slice_thickness=2.0)


def test_sparse_vae_restores_thick_slices_with_std_and_draws(tmp_path):
    """The sparse VAE form on a thick-slice file: the restored volume, a positive finite
    std and two distinct draws on the fine grid, each reproducing the acquired slices
    under the profile (box means of 3 fine voxels), the calibration in the JSON."""
    import json

    import nibabel as nib

    from sparselayers import mri

    fine = smooth_volume((20, 22, 30), 5)
    thick = write_thick(tmp_path / "scan.nii.gz", fine, 2, 3, np.diag([1.0, 1.0, 3.0, 1.0]))
    mri.impute_slices([tmp_path / "scan.nii.gz"], tmp_path / "out",
                      variant="conv-interp-residual-vae", steps=4, steps_per_epoch=2,
                      patch_size=16, batch_size=4, samples=2, draws=2, verbose=0,
                      montage=False)
    out = tmp_path / "out"
    restored = nib.load(str(out / "scan_imputed.nii.gz")).get_fdata()
    std = nib.load(str(out / "scan_std.nii.gz")).get_fdata()
    draws = [nib.load(str(out / f"scan_draw-0{k}.nii.gz")).get_fdata() for k in (1, 2)]
    assert restored.shape == std.shape == draws[0].shape == (20, 22, 30)
    assert np.all(np.isfinite(std)) and std.min() > 0
    assert np.any(draws[0] != draws[1])
    for volume in [restored] + draws:
        box_means = volume.reshape(20, 22, 10, 3).mean(axis=3)
        np.testing.assert_allclose(box_means, thick, atol=1e-3 * np.abs(thick).max())
    calibration = json.loads((out / "self_validation.json").read_text())["std_calibration"]
    assert calibration[str(tmp_path / "scan.nii.gz")]["scale"] > 0
    assert 0.5 <= calibration[str(tmp_path / "scan.nii.gz")]["averaging_factor"] <= 1.0


@pytest.mark.parametrize("options, message", [
    (["--slice-thickness", "0"], "slice thickness must be a finite number > 0"),
    (["--slice-thickness", "60"], "more than 4 times the slice spacing"),
    (["--slice-profile", "trapezoid"], "invalid choice"),
    (["--resolution", "-1"], "resolution must be a finite number > 0"),
])
@pytest.mark.process
def test_cli_refuses_bad_profiles_before_any_work(tmp_path, options, message):
    fine = smooth_volume((12, 12, 18), 7)
    write_thick(tmp_path / "scan.nii.gz", fine, 2, 3, np.diag([1.0, 1.0, 3.0, 1.0]))
    result = subprocess.run(
        [sys.executable, "-m", "sparselayers.mri.cli", str(tmp_path / "scan.nii.gz"), "--out",
         str(tmp_path / "out"), "--quiet", *options], capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not (tmp_path / "out" / "training_backup").exists()
