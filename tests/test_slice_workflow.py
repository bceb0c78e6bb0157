"""The thick-slice workflow: detection, training data, imputation, files, the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

nibabel = pytest.importorskip("nibabel")

from sparselayers import mri  # noqa: E402
from sparselayers.mri import volume_io  # noqa: E402
from training_hooks import fit_callbacks  # noqa: E402


def smooth_volume(shape, seed):
    """A smooth random 'head': blurred noise inside an ellipsoid, values ~100-1000."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), -1)
    inside = (grid ** 2).sum(-1) < 0.8
    noise = rng.normal(size=shape)
    for axis in range(3):  # a separable blur, done by hand: no SciPy needed
        noise = sum(np.roll(noise, shift, axis) for shift in (-2, -1, 0, 1, 2)) / 5
    volume = np.where(inside, 500 + 150 * noise / noise.std() + 200 * grid[..., 0], 0.0)
    return volume.astype(np.float32)


def sparse_copy(volume, axis, every, offset):
    kept = np.zeros(volume.shape[axis], bool)
    kept[offset::every] = True
    index = [None, None, None]
    index[axis] = slice(None)
    return np.where(kept[tuple(index)], volume, 0.0).astype(np.float32), kept


def write_nifti(path, data, zooms=(2.0, 2.0, 2.0), dtype=np.float32):
    affine = np.diag(list(zooms) + [1.0])
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    image = nibabel.Nifti1Image(data.astype(dtype), affine)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = b"synthetic test volume"
    nibabel.save(image, str(path))
    return affine


def numpy_linear(volume, kept, axis):
    """numpy.interp along `axis` from the kept slices, line by line."""
    moved = np.moveaxis(volume, axis, -1)
    filled = np.empty_like(moved)
    positions = np.flatnonzero(kept)
    for index in np.ndindex(moved.shape[:-1]):
        filled[index] = np.interp(np.arange(moved.shape[-1]), positions, moved[index][positions])
    return np.moveaxis(filled, -1, axis)


def test_find_acquisition_from_zero_slices_on_each_axis():
    volume = smooth_volume((20, 22, 24), 0)
    for axis in range(3):
        sparse, kept = sparse_copy(volume, axis, 3, offset=1)
        acquisition = mri.find_acquisition(sparse)
        assert acquisition.axis == axis and acquisition.every == 3
        np.testing.assert_array_equal(acquisition.acquired, kept)
        assert mri.find_acquisition(sparse, axis=axis, every=3).axis == axis
    with pytest.raises(ValueError, match="not every=4"):
        mri.find_acquisition(sparse, every=4)
    with pytest.raises(ValueError, match="no missing slices found along axis 0"):
        mri.find_acquisition(sparse, axis=0)
    with pytest.raises(ValueError, match="no missing slices"):
        mri.find_acquisition(volume)


def test_thick_slice_header_is_refined_in_place():
    thick = smooth_volume((12, 14, 6), 1)
    acquisition = mri.find_acquisition(thick, zooms=(1.0, 1.0, 3.0))
    assert (acquisition.axis, acquisition.every) == (2, 3) and acquisition.acquired.all()
    assert acquisition.thick
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    affine[:3, 3] = [4.0, 5.0, 6.0]
    fine, fine_affine, fine_acquisition = mri.refine_thick_slices(
        thick, affine, acquisition)
    assert fine.shape == (12, 14, 16)
    np.testing.assert_array_equal(fine[:, :, ::3], thick)
    # Thick slice k and fine slice 3k sit at the same world position.
    for k in range(6):
        np.testing.assert_allclose(affine @ [2, 3, k, 1], fine_affine @ [2, 3, 3 * k, 1])
    assert fine_acquisition.acquired.sum() == 6 and fine_acquisition.refined_from == 3
    assert not fine_acquisition.thick


def test_sample_patches_hide_rows_every_nth():
    rng = np.random.default_rng(0)
    slices = [np.random.default_rng(i).random((30, 40)).astype(np.float32) + 0.5
              for i in range(3)]
    image, mask, truth, weight = mri.training.sample_patches(slices, 4, 16, 10, rng)
    assert image.shape == mask.shape == truth.shape == weight.shape == (10, 16, 16, 1)
    for index in range(10):
        rows = np.flatnonzero(mask[index, :, 0, 0])
        assert np.all(np.diff(rows) == 4) and rows[0] < 4
        assert np.all(mask[index] == mask[index, :, :1])  # whole rows
        np.testing.assert_array_equal(image[index], truth[index] * mask[index])
        np.testing.assert_array_equal(weight[index], 1 - mask[index])
        # Each patch is a (possibly transposed / flipped) window of a slice.
        patch = truth[index, :, :, 0]
        found = False
        for source in slices:
            for view in (source, source.T):
                for flipped in (view, view[::-1], view[:, ::-1], view[::-1, ::-1]):
                    hits = np.argwhere(flipped == patch[0, 0])
                    for top, left in hits:
                        window = flipped[top:top + 16, left:left + 16]
                        found |= window.shape == patch.shape and np.array_equal(window, patch)
        assert found


def test_untrained_model_imputes_linear_interpolation():
    """The conv-interp-residual model starts as linear interpolation along the axis."""
    import sparselayers

    volume = smooth_volume((18, 20, 22), 2)
    for axis in range(3):
        sparse, kept = sparse_copy(volume, axis, 3, offset=2)
        acquisition = mri.find_acquisition(sparse)
        sparse_nan = np.where(acquisition.mask(sparse.shape), sparse, np.nan)
        model = sparselayers.build_variant("conv-interp-residual", (None, None, 1), filters=4,
                                           dilations=(1,))
        filled = mri.impute_volume(model, sparse_nan, acquisition, batch_size=5)
        np.testing.assert_allclose(filled, numpy_linear(volume, kept, axis), rtol=1e-5,
                                   atol=1e-3)
        assert np.all(filled[acquisition.mask(sparse.shape)]
                      == sparse[acquisition.mask(sparse.shape)])


def test_training_lowers_the_error_on_hidden_rows():
    """A short training beats interpolation on held-out rows of smooth images."""
    import keras

    import sparselayers

    keras.utils.set_random_seed(0)
    stacks = [mri.training.acquired_slices(*_scaled_sparse(seed)) for seed in range(2)]
    dataset = mri.training_dataset(stacks, 3, patch_size=16, batch_size=8,
                                   patches_per_visit=16, seed=0)
    model = sparselayers.build_variant("conv-interp-residual", (None, None, 1), filters=8,
                                       dilations=(1, 2, 1))
    model.compile(keras.optimizers.Adam(3e-3), loss="mse")
    (image, mask), truth, weight = next(iter(dataset.take(1)))
    before = model.evaluate([image, mask], truth, sample_weight=weight, verbose=0)
    model.fit(dataset, steps_per_epoch=60, epochs=1, verbose=0, shuffle=False)
    after = model.evaluate([image, mask], truth, sample_weight=weight, verbose=0)
    assert after < 0.9 * before


def _scaled_sparse(seed):
    volume = smooth_volume((20, 24, 24), seed)
    sparse, _ = sparse_copy(volume, 2, 3, seed % 3)
    acquisition = mri.find_acquisition(sparse)
    scaled, _ = mri.normalize(sparse, acquisition)
    return scaled, acquisition


@pytest.fixture
def two_volumes(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    truths = {}
    for seed, (shape, offset) in enumerate([((20, 24, 27), 0), ((22, 20, 24), 1)]):
        volume = smooth_volume(shape, 10 + seed)
        sparse, kept = sparse_copy(volume, 2, 3, offset)
        path = inputs / f"subject{seed}.nii.gz"
        write_nifti(path, sparse)
        truths[str(path)] = (volume, kept)
    return inputs, truths


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sparselayers.mri.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.process
def test_cli_end_to_end_and_model_reuse(two_volumes, tmp_path):
    inputs, truths = two_volumes
    out = tmp_path / "out"
    result = _run_cli(inputs, "--out", out, "--steps", 40, "--steps-per-epoch", 20,
                      "--patch-size", 16, "--filters", 8, "--quiet")
    assert result.returncode == 0, result.stderr
    for path, (volume, kept) in truths.items():
        name = os.path.basename(path)[:-len(".nii.gz")]
        written = nibabel.load(str(out / f"{name}_imputed.nii.gz"))
        original = nibabel.load(path)
        np.testing.assert_array_equal(written.affine, original.affine)
        assert written.header.get_zooms() == original.header.get_zooms()
        assert written.header["descrip"] == original.header["descrip"]
        assert nibabel.aff2axcodes(written.affine) == nibabel.aff2axcodes(original.affine)
        data = written.get_fdata(dtype=np.float32)
        sparse = original.get_fdata(dtype=np.float32)
        assert data.shape == sparse.shape and np.all(np.isfinite(data))
        np.testing.assert_array_equal(data[:, :, kept], sparse[:, :, kept])  # bit-exact
        # The missing slices are filled in the input's units, about as well
        # as linear interpolation after this short training (not left at 0).
        head = volume[:, :, ~kept] > 100
        error = np.abs(data - volume)[:, :, ~kept][head].mean()
        linear = np.abs(numpy_linear(volume, kept, axis=2) - volume)[:, :, ~kept][head].mean()
        assert error < 1.5 * linear < 0.5 * np.abs(volume[:, :, ~kept][head]).mean()
        assert (out / f"{name}_montage.png").exists()
    assert (out / "model.keras").exists() and not (out / "training_backup").exists()

    # Train once, impute many: the saved model on a new scan, no training.
    again = tmp_path / "again"
    result = _run_cli(next(iter(truths)), "--model", out / "model.keras", "--out", again,
                      "--no-montage", "--quiet")
    assert result.returncode == 0, result.stderr
    first = nibabel.load(str(out / "subject0_imputed.nii.gz")).get_fdata()
    second = nibabel.load(str(again / "subject0_imputed.nii.gz")).get_fdata()
    np.testing.assert_array_equal(first, second)
    assert not (again / "model.keras").exists()


def test_resume_continues_from_the_backup(two_volumes, tmp_path):
    import keras

    inputs, _ = two_volumes
    out = tmp_path / "out"

    class Stop(keras.callbacks.Callback):
        """Simulates a stopped run: raise after the first epoch's backup."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    with fit_callbacks(last=[Stop()]), pytest.raises(KeyboardInterrupt):
        mri.impute_slices([inputs], out, steps=20, steps_per_epoch=10,
                          patch_size=16, filters=4, verbose=0)
    assert (out / "training_backup").exists()
    assert not list(out.glob("*_imputed.nii.gz"))
    with pytest.raises(ValueError, match="--resume"):
        mri.impute_slices([inputs], out, steps=20, steps_per_epoch=10,
                          patch_size=16, filters=4, verbose=0)
    epochs_run = []

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs_run.append(epoch)

    with fit_callbacks(last=[Count()]):
        mri.impute_slices([inputs], out, steps=20, steps_per_epoch=10, resume=True,
                          patch_size=16, filters=4, verbose=0, montage=False)
    assert epochs_run == [1]  # epoch 0 came from the backup
    assert len(list(out.glob("*_imputed.nii.gz"))) == 2
    assert not (out / "training_backup").exists()


def test_thick_slice_file_as_point_samples_is_written_on_the_refined_grid(tmp_path):
    # With --slice-profile point, a thick-slice file keeps the n-fold refined
    # grid ending at the first and last slice centres (box and Gaussian
    # profiles: tests/test_slice_profile.py).
    volume = smooth_volume((16, 18, 19), 3)
    thick = volume[:, :, ::3]  # 7 thick slices, 6 mm
    path = tmp_path / "thick.nii"
    affine = write_nifti(path, thick, zooms=(2.0, 2.0, 6.0))
    out = tmp_path / "out"
    mri.impute_slices([path], out, steps=10, steps_per_epoch=10, patch_size=12,
                      filters=4, verbose=0, montage=False, slice_profile="point")
    written = nibabel.load(str(out / "thick_imputed.nii"))
    assert written.shape == (16, 18, 19)
    expected = affine.copy()
    expected[:3, 2] /= 3
    np.testing.assert_allclose(written.affine, expected)
    np.testing.assert_array_equal(written.get_fdata(dtype=np.float32)[:, :, ::3], thick)


def test_numpy_inputs_and_npz_keys(tmp_path):
    volume = smooth_volume((16, 18, 18), 4)
    sparse, kept = sparse_copy(volume, 1, 3, 0)
    np.save(tmp_path / "a.npy", sparse)
    np.savez(tmp_path / "b.npz", segmentation=(volume > 500).astype(np.uint8), t1=sparse)
    with pytest.raises(ValueError, match=r"b.npz: .*2 arrays \(segmentation, t1\): name"):
        volume_io.read_volume(tmp_path / "b.npz")
    out = tmp_path / "out"
    mri.impute_slices([tmp_path / "a.npy", tmp_path / "b.npz"], out, key="t1",
                      steps=10, steps_per_epoch=10, patch_size=12, filters=4,
                      verbose=0, montage=False)
    np.testing.assert_array_equal(np.load(out / "a_imputed.npy")[:, kept], sparse[:, kept])
    with np.load(out / "b_imputed.npz") as archive:
        np.testing.assert_array_equal(archive["volume"][:, kept], sparse[:, kept])


def test_bad_inputs_fail_before_training_with_the_file_named(tmp_path):
    good = tmp_path / "good.nii.gz"
    sparse, _ = sparse_copy(smooth_volume((16, 16, 18), 5), 2, 3, 0)
    write_nifti(good, sparse)
    (tmp_path / "text.nii.gz").write_text("not a volume")
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 5), np.float32), np.eye(4)),
                 str(tmp_path / "flat.nii"))
    nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 9), np.float32), np.eye(4)),
                 str(tmp_path / "zero.nii"))
    with_nan = sparse.copy()
    with_nan[3, 4, 0] = np.nan
    write_nifti(tmp_path / "nan.nii", with_nan)
    full = smooth_volume((16, 16, 18), 6)
    write_nifti(tmp_path / "full.nii", full)
    cases = {
        "text.nii.gz": "not a readable volume",
        "flat.nii": r"expected a 3-D volume; found shape \(4, 5\)",
        "zero.nii": "every voxel equals 0",
        "nan.nii": "1 voxels are NaN or Inf",
        "full.nii": "no missing slices found",
        "missing.nii": "no such file",
        "notes.txt": "not a volume file",
    }
    (tmp_path / "notes.txt").write_text("hello")
    for name, message in cases.items():
        out = tmp_path / f"out_{name}"
        with pytest.raises(ValueError, match=message) as error:
            mri.impute_slices([good, tmp_path / name], out, steps=5, verbose=0)
        assert name in str(error.value)
        assert not (out / "model.keras").exists()  # nothing trained
    # Volumes acquired at different spacings are one collection now (one
    # training, each degraded as acquired: tests/test_slice_profile.py).
    # An output may never overwrite an input.
    same = tmp_path / "same"
    same.mkdir()
    clash = same / "x_imputed.nii.gz"
    write_nifti(clash, sparse)
    with pytest.raises(ValueError, match="overwrite an input"):
        mri.impute_slices([clash, same / "x_imputed_imputed.nii.gz"], same,
                          verbose=0)
    like = volume_io.read_volume(good)
    with pytest.raises(ValueError, match="overwrite its input"):
        volume_io.write_volume(good, sparse, like)
    # The CLI reports these as one line, exit status 2.
    result = _run_cli(tmp_path / "flat.nii", "--out", tmp_path / "cli")
    assert result.returncode == 2 and "flat.nii" in result.stderr
    assert "Traceback" not in result.stderr


def test_fixed_size_model_too_small_fails_before_training(tmp_path):
    import sparselayers

    sparse, _ = sparse_copy(smooth_volume((16, 16, 18), 14), 2, 3, 0)
    np.save(tmp_path / "scan.npy", sparse)
    small = sparselayers.build_variant("conv-zero", (12, 12, 1), 3, filters=4, levels=2)
    with pytest.raises(ValueError, match=r"scan.npy: its cuts \(18 x 16 voxels"):
        mri.impute_slices([tmp_path / "scan.npy"], tmp_path / "out", model=small,
                          steps=5, verbose=0)
    assert not (tmp_path / "out" / "model.keras").exists()


def test_help_shows_defaults():
    help_text = mri.cli.build_parser().format_help()
    assert "--every" in help_text and "(default: 48)" in help_text
    # Each default once and truly: no "(default: None)" beside a help text
    # that says what None means, none for a required option.
    flat = " ".join(help_text.split())
    assert "(default: None)" not in flat and "(default: False)" not in flat
    assert "training steps (default 3000; 0 with --model) (default" not in flat


def test_sparse_vae_form_writes_imputation_and_uncertainty(two_volumes, tmp_path):
    inputs, truths = two_volumes
    out = tmp_path / "out"
    mri.impute_slices([inputs], out, variant="conv-interp-residual-vae", samples=3,
                      steps=20, steps_per_epoch=10, patch_size=16, filters=4,
                      verbose=0, montage=False, draws=2, validation_share=0.2)
    with open(out / "self_validation.json") as file:
        calibrations = json.load(file)["std_calibration"]
    for path, (volume, kept) in truths.items():
        name = os.path.basename(path)[:-len(".nii.gz")]
        imputed = nibabel.load(str(out / f"{name}_imputed.nii.gz")).get_fdata(dtype=np.float32)
        spread = nibabel.load(str(out / f"{name}_std.nii.gz")).get_fdata(dtype=np.float32)
        sparse = nibabel.load(path).get_fdata(dtype=np.float32)
        np.testing.assert_array_equal(imputed[:, :, kept], sparse[:, :, kept])
        assert np.all(np.isfinite(imputed)) and np.all(np.isfinite(spread))
        assert np.all(spread[:, :, kept] == 0) and np.all(spread >= 0)
        assert spread[:, :, ~kept].mean() > 0  # uncertain where nothing was acquired
        # Two multiple imputations, acquired voxels bit-exact, missing ones differing.
        draws = [nibabel.load(str(out / f"{name}_draw-{k:02d}.nii.gz")).get_fdata(dtype=np.float32)
                 for k in (1, 2)]
        for draw in draws:
            np.testing.assert_array_equal(draw[:, :, kept], sparse[:, :, kept])
            assert np.all(np.isfinite(draw))
        # (Both may be 0 where clipped: a magnitude image has no negative voxel.)
        first, second = draws[0][:, :, ~kept], draws[1][:, :, ~kept]
        differ = first != second
        assert np.all(differ | ((first == 0) & (second == 0))) and np.mean(differ) > 0.3
        assert not (out / f"{name}_draw-03.nii.gz").exists()
        calibration = calibrations[path]
        assert calibration["scale"] > 0 and calibration["voxels"] > 0
        multipliers = [calibration["interval_multipliers"][level] for level in ("0.5", "0.9", "0.95")]
        assert 0 < multipliers[0] < multipliers[1] < multipliers[2]
        # The views' averaging factor measured on the volume, recorded beside it.
        assert 0.5 <= calibration["averaging_factor"] <= 1.0
        recorded = mri.uncertainty.Calibration.from_dict(calibration)
        assert recorded.averaging_factor == calibration["averaging_factor"]
        assert recorded.as_dict() == calibration
    import keras

    from sparselayers import SparseVAE

    assert isinstance(keras.saving.load_model(str(out / "model.keras")), SparseVAE)


def test_sample_volume_matches_the_moments_of_each_cut(rng):
    """Mean and std are each cut's predictive moments, its mirror's too, averaged over
    the four views (std: the root of the mean variance), times the calibration's scale
    and the factor for averaging two orientations: sqrt(1 - sum of the squared
    half-differences of the orientations' means / sum of the calibrated variances) over
    the missing voxels whose mean is above 0.1."""
    import sparselayers

    volume = smooth_volume((10, 11, 12), 8) / 1000
    sparse, kept = sparse_copy(volume, 1, 3, 0)
    acquisition = mri.find_acquisition(sparse)
    model = sparselayers.build_variant("conv-interp-residual-vae", (None, None, 1), latent_dim=2,
                                       filters=4, dilations=(1,))
    # Untrained, the decoder is interpolation along the axis, the same in both
    # orientations: perturbed weights make the two orientations differ.
    for weight in model.trainable_weights:
        weight.assign(weight + rng.normal(0, 0.1, weight.shape).astype(np.float32))
    calibration = mri.uncertainty.Calibration(1.7, [1.0] * 10, 100)
    mean, spread, factor = mri.sample_volume(model, sparse, acquisition, num_samples=4,
                                             batch_size=100, seed=3, calibration=calibration,
                                             return_factor=True)
    # Reference: the same draws (the same seeds, in the same order), cut by hand.
    seeds = np.random.default_rng(3)
    moved = np.moveaxis(sparse, 1, 0)  # (A, X, Z)
    orientation_means, variances = [np.zeros(moved.shape), np.zeros(moved.shape)], 0.0
    for cut_axis, means in zip((1, 2), orientation_means):
        cuts = np.moveaxis(moved, cut_axis, 0)[..., None]
        mask = np.broadcast_to(kept[None, :, None, None], cuts.shape).astype(np.float32)
        for flip in (slice(None), slice(None, None, -1)):
            m, s = model.predictive_moments(np.where(mask > 0, cuts, 0)[:, :, flip],
                                            mask[:, :, flip], 4, batch_size=len(cuts),
                                            seed=int(seeds.integers(2**31)))
            means += np.moveaxis(m[:, :, flip, 0], 0, cut_axis) / 2
            variances = variances + np.moveaxis(s[:, :, flip, 0] ** 2, 0, cut_axis) / 4
    means = (orientation_means[0] + orientation_means[1]) / 2
    pooled = ~kept[:, None, None] & (means > 0.1)
    assert pooled.sum() > 100
    half_gap = (orientation_means[0] - orientation_means[1]) / 2
    want_factor = np.sqrt(1 - np.sum(half_gap[pooled] ** 2)
                          / np.sum(1.7**2 * variances[pooled]))
    assert 0.5 < want_factor < 0.999      # 0.995 on this seed
    assert factor == pytest.approx(want_factor, rel=1e-5)
    want_mean = np.moveaxis(np.where(kept[:, None, None], moved, means), 0, 1)
    want_std = np.moveaxis(np.where(kept[:, None, None], 0.0,
                                    1.7 * want_factor * np.sqrt(variances)), 0, 1)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spread, want_std, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mean[:, kept], sparse[:, kept])


def test_impute_volume_memory_is_a_few_volumes():
    """NumPy allocations during imputation: at most 3 volumes plus one batch of cuts."""
    import tracemalloc

    import sparselayers

    size = 64
    volume = smooth_volume((size, size, size), 9) / 1000
    sparse, _ = sparse_copy(volume, 0, 3, 0)
    acquisition = mri.find_acquisition(sparse)
    model = sparselayers.build_variant("conv-interp-residual", (None, None, 1), filters=4,
                                       dilations=(1,))
    mri.impute_volume(model, sparse[:, :8, :8], acquisition)  # trace first
    tracemalloc.start()
    filled = mri.impute_volume(model, sparse, acquisition, batch_size=4)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    batch = 4 * size * size * 4 * 8  # a batch of cuts: a few float32 copies of 4 cuts
    assert peak < 3 * volume.nbytes + batch, (peak / volume.nbytes)
    assert np.isfinite(filled).all()


def test_fixed_size_models_get_padded_cuts(rng):
    """A model of fixed input size (a 2**levels multiple) imputes cuts of other sizes."""
    import sparselayers

    volume = smooth_volume((18, 21, 22), 11) / 1000
    sparse, kept = sparse_copy(volume, 2, 3, 1)
    acquisition = mri.find_acquisition(sparse)
    model = sparselayers.build_variant("conv-zero", (24, 24, 1), 3, filters=4, levels=2)
    filled = mri.impute_volume(model, sparse, acquisition)
    assert filled.shape == volume.shape and np.all(np.isfinite(filled))
    np.testing.assert_array_equal(filled[:, :, kept], sparse[:, :, kept])
    # Reference: each cut zero-padded (mask 0) to 24 x 24 by hand, the
    # model's output cropped back, the two orientations averaged.
    moved = np.moveaxis(sparse, 2, 0)  # (A, X, Y)
    total = np.zeros_like(moved)
    for cut_axis in (1, 2):
        for index in range(moved.shape[cut_axis]):
            cut = np.take(moved, index, axis=cut_axis)  # (A, other)
            padded = np.zeros((1, 24, 24, 1), np.float32)
            padded[0, :cut.shape[0], :cut.shape[1], 0] = cut
            pad_mask = np.zeros_like(padded)
            pad_mask[0, :cut.shape[0], :cut.shape[1], 0] = kept[:, None]
            output = model([padded, pad_mask]).numpy()[0, :cut.shape[0], :cut.shape[1], 0]
            where = [slice(None)] * 3
            where[cut_axis] = index
            total[tuple(where)] += output / 2
    want = np.moveaxis(np.where(kept[:, None, None], moved, total), 0, 2)
    unmirrored = mri.impute_volume(model, sparse, acquisition, mirror=False)
    np.testing.assert_allclose(unmirrored, want, rtol=1e-4, atol=1e-5)
    small = sparselayers.build_variant("conv-zero", (16, 16, 1), 3, filters=4, levels=2)
    with pytest.raises(ValueError, match="do not fit the model's fixed input size 16 x 16"):
        mri.impute_volume(small, sparse, acquisition)
    # The workflow says so before any training, naming the file.
    with pytest.raises(ValueError, match=r"big.npy: its cuts \(22 x 21 voxels"):
        mri.imputation.check_cuts_fit(small, sparse.shape, acquisition, name="big.npy")
    mri.imputation.check_cuts_fit(model, sparse.shape, acquisition)  # 24 x 24: fits


def test_anatomical_axis_names_follow_each_affine(tmp_path):
    """--axis axial is the I-S axis of each file: axis 1 of a P-S-R volume."""
    volume = smooth_volume((16, 18, 20), 12)
    sparse, kept = sparse_copy(volume, 1, 3, 0)
    path = tmp_path / "psr.nii.gz"
    affine = np.array([[0, 0, 2.0, 0], [-2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]])
    nibabel.save(nibabel.Nifti1Image(sparse, affine), str(path))
    assert nibabel.aff2axcodes(affine) == ("P", "S", "R")
    like = volume_io.read_volume(path)
    assert mri.inputs.resolve_axis("axial", like) == 1
    assert mri.inputs.resolve_axis("sagittal", like) == 2
    assert mri.inputs.resolve_axis("coronal", like) == 0
    with pytest.raises(ValueError, match="--axis must be"):
        mri.inputs.resolve_axis("oblique", like)
    with pytest.raises(ValueError, match="no missing slices found along axis 2"):
        mri.impute_slices([path], tmp_path / "o", axis="sagittal", verbose=0)
    written = mri.impute_slices([path], tmp_path / "out", axis="axial", steps=10,
                                steps_per_epoch=10, patch_size=12, filters=4,
                                verbose=0, montage=False)
    result = nibabel.load(written[str(path)])
    np.testing.assert_array_equal(result.affine, affine)
    np.testing.assert_array_equal(result.get_fdata(dtype=np.float32)[:, kept], sparse[:, kept])


def test_default_batch_bounds_each_call(monkeypatch):
    """batch_size=None: cuts per call = the activation budget over the widest layer."""
    import sparselayers
    from sparselayers.models import sparse_vae_imputation

    volume = smooth_volume((12, 14, 15), 13) / 1000
    sparse, _ = sparse_copy(volume, 2, 3, 0)
    acquisition = mri.find_acquisition(sparse)
    model = sparselayers.build_variant("conv-interp-residual", (None, None, 1), filters=6,
                                       dilations=(1, 2))
    widest = sparse_vae_imputation.widest_activation(model, (15, 14, 1))
    assert widest == 15 * 14 * 6  # six channels at the largest cut's size
    monkeypatch.setattr(mri.imputation, "ACTIVATION_VALUES_PER_CALL", 5 * widest)
    sizes = []
    original = mri.imputation._predictor

    def counting_predictor(model):
        predict = original(model)
        return lambda image, mask: sizes.append(len(image)) or predict(image, mask)

    monkeypatch.setattr(mri.imputation, "_predictor", counting_predictor)
    filled = mri.impute_volume(model, sparse, acquisition, mirror=False)
    assert sizes == [5, 5, 2, 5, 5, 4]  # 12 cuts at fixed x, 14 at fixed y
    reference = mri.impute_volume(model, sparse, acquisition, batch_size=100,
                                  mirror=False)
    np.testing.assert_allclose(filled, reference, rtol=1e-5, atol=1e-6)


# -- Issue 21, the items resolved so far --------------------------------------

@pytest.mark.parametrize("options, message", [
    (dict(learning_rate=float("nan")), "--learning-rate must be a finite number > 0"),
    (dict(learning_rate=-1.0), "--learning-rate must be a finite number > 0"),
    (dict(learning_rate=0.0), "--learning-rate must be a finite number > 0"),
    (dict(patch_size=0), "--patch-size must be a positive int"),
    (dict(patch_size=-4), "--patch-size must be a positive int"),
    (dict(batch_size=0), "--batch-size must be a positive int"),
    (dict(steps_per_epoch=0), "--steps-per-epoch must be a positive int"),
    (dict(steps_per_epoch=-5), "--steps-per-epoch must be a positive int"),
    (dict(seed=-1), "--seed must be an int >= 0"),
    (dict(steps=2.5), "--steps must be an int >= 0"),
    (dict(samples=0), "--samples must be a positive int"),
])
def test_bad_options_are_refused_before_any_work(two_volumes, tmp_path, options, message):
    inputs, _ = two_volumes
    with pytest.raises(ValueError, match=message):
        mri.impute_slices([inputs], tmp_path / "out", verbose=0, **options)
    assert not (tmp_path / "out").exists()


def test_out_naming_a_file_is_refused(two_volumes, tmp_path):
    inputs, _ = two_volumes
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(ValueError, match="--out names a file"):
            mri.impute_slices([inputs], out, steps=1, verbose=0)


def test_steps_trains_exactly_that_many_steps(two_volumes, tmp_path):
    import keras

    inputs, _ = two_volumes
    seen = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    with fit_callbacks(last=[Count()]):
        mri.impute_slices([inputs], tmp_path / "out", steps=7, steps_per_epoch=5,
                          patch_size=12, filters=2, verbose=0, montage=False)
    assert seen == [0, 1, 2, 3, 4, 0, 1]  # 5 + 2, not 10


def test_diverged_training_writes_nothing(tmp_path):
    # The case: --learning-rate 1e4 wrote every missing voxel as NaN.
    # Whether a given rate overflows depends on the initial weights, so the
    # divergence is made certain: the model's correction turns NaN as training
    # starts (after the --model check, which would refuse a NaN model).
    import keras

    import sparselayers

    sparse, _ = sparse_copy(smooth_volume((20, 24, 27), 10), 2, 3, 0)
    write_nifti(tmp_path / "a.nii.gz", sparse)
    model = sparselayers.build_variant("conv-interp-residual", (None, None, 1), filters=2)

    class Poison(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            bias = self.model.get_layer("correction").bias
            bias.assign(np.full(bias.shape, np.nan, np.float32))

    out = tmp_path / "out"
    with fit_callbacks(first=[Poison()]), pytest.raises(
            ValueError, match=r"training diverged at step 1 .*lower --learning-rate"):
        mri.impute_slices([tmp_path / "a.nii.gz"], out, model=model, steps=30,
                          steps_per_epoch=10, patch_size=12, verbose=0)
    assert not list(out.glob("*_imputed*")) and not (out / "model.keras").exists()


def test_header_codes_are_kept_on_a_refined_grid(tmp_path):
    volume = smooth_volume((12, 14, 18), 8)
    thick = volume[:, :, ::3]
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    image = nibabel.Nifti1Image(thick.astype(np.float32), affine)
    image.set_qform(affine, 1)
    image.set_sform(affine, 1)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_intent("estimate", name="T1w")
    image.header["descrip"] = b"thick T1"
    nibabel.save(image, str(tmp_path / "thick.nii.gz"))
    for profile in ("point", "box"):
        out = tmp_path / f"out_{profile}"
        written = mri.impute_slices([tmp_path / "thick.nii.gz"], out, steps=2,
                                    steps_per_epoch=2, patch_size=8, filters=2, verbose=0,
                                    montage=False, slice_profile=profile)
        header = nibabel.load(written[str(tmp_path / "thick.nii.gz")]).header
        assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 1), profile
        # Intent, units and description too: only the slice column and the type change.
        assert header.get_xyzt_units() == ("mm", "sec"), profile
        assert header.get_intent()[0] == "estimate" and header.get_intent()[2] == "T1w"
        assert header["descrip"] == b"thick T1", profile
        assert header.get_data_dtype() == np.float32


def test_module_functions_refuse_bad_counts():
    # Issue 21, item 8: these returned zeros, trained on nothing or divided by 0.
    import sparselayers

    scaled, acquisition = _scaled_sparse(0)
    model = sparselayers.build_variant("conv-interp-residual", (None, None, 1), filters=2)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        mri.impute_volume(model, scaled, acquisition, batch_size=-1)
    with pytest.raises(ValueError, match="sample_volume needs a SparseVAE"):
        mri.sample_volume(model, scaled, acquisition)
    vae = sparselayers.build_variant("conv-interp-residual-vae", (None, None, 1), filters=2)
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        mri.sample_volume(vae, scaled, acquisition, num_samples=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        mri.sample_volume(vae, scaled, acquisition, batch_size=-1)
    stacks = [mri.training.acquired_slices(scaled, acquisition)]
    with pytest.raises(ValueError, match="every must be an int >= 2"):
        mri.training_dataset(stacks, 1)
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        mri.training_dataset(stacks, 3, patch_size=0)
