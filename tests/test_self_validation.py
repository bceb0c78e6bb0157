"""Self-validation (`sparselayers.mri.self_validation`): held-out slices,
and its errors against a NumPy reference (np.interp per column)."""

import json

import keras
import numpy as np
import pytest

from sparselayers import mri
from sparselayers.mri import self_validation
from sparselayers.mri.inputs import PreparedVolume
from sparselayers.mri.inputs import SliceStacks
from sparselayers.mri.slice_profile import SliceProfile
from sparselayers.mri.training import FOREGROUND
from sparselayers.mri.training import RowSampling

nibabel = pytest.importorskip("nibabel")

from tests.test_slice_workflow import smooth_volume  # noqa: E402
from tests.test_slice_workflow import sparse_copy  # noqa: E402
from tests.test_slice_workflow import write_nifti  # noqa: E402


def test_held_out_slices_are_evenly_spread_and_leave_enough_to_train():
    assert self_validation.held_out_slices(45, 0.1).tolist() == [4, 13, 22, 31, 40]
    assert self_validation.held_out_slices(10, 0.5).tolist() == [1, 3, 5, 7, 9]
    assert self_validation.held_out_slices(5, 0.01).tolist() == [2]    # at least one
    assert self_validation.held_out_slices(45, 0).size == 0
    assert self_validation.held_out_slices(2, 0.3).size == 0            # would leave one
    for share in (-0.1, 0.6, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="--validation-share must be a number in"):
            self_validation.held_out_slices(45, share)


def identity_model():
    """[image, mask] -> image: hidden rows stay 0, thick-slice input stays as given."""
    image = keras.Input((None, None, 1))
    mask = keras.Input((None, None, 1))
    return keras.Model([image, mask], keras.layers.Add()([image, 0.0 * mask]))


def _reference_point_errors(stack, every):
    """Sums of squared errors of the identity model and of np.interp, and the count."""
    model_error = linear_error = voxels = 0
    for truth in stack:
        for oriented in (truth, truth.T):
            rows = np.arange(oriented.shape[0])
            for offset in range(every):
                kept = rows[offset::every]
                hidden = np.ones(len(rows), bool)
                hidden[kept] = False
                linear = np.stack([np.interp(rows, kept, oriented[kept, column])
                                   for column in range(oriented.shape[1])], axis=1)
                scored = hidden[:, None] & (oriented > FOREGROUND)
                model_error += np.sum(oriented[scored] ** 2)
                linear_error += np.sum((linear - oriented)[scored] ** 2)
                voxels += np.count_nonzero(scored)
    return model_error, linear_error, voxels


def test_point_errors_match_a_numpy_reference(rng):
    stacks = [rng.uniform(0, 1, (2, 13, 17)).astype(np.float32),
              rng.uniform(0, 1, (1, 16, 11)).astype(np.float32)]
    result = self_validation.validate(identity_model(), stacks, [3, RowSampling(2)])
    totals = np.zeros(3)
    for stack, every, scores in zip(stacks, (3, 2), result["inputs"]):
        model_error, linear_error, voxels = _reference_point_errors(stack, every)
        totals += (model_error, linear_error, voxels)
        assert scores["voxels"] == voxels and scores["slices"] == len(stack)
        np.testing.assert_allclose(scores["model_mse"], model_error / voxels, rtol=1e-5)
        np.testing.assert_allclose(scores["linear_mse"], linear_error / voxels, rtol=1e-5)
        np.testing.assert_allclose(scores["improvement"], 1 - model_error / linear_error,
                                   rtol=1e-5)
    overall = result["overall"]   # every scored voxel counted once
    assert overall["voxels"] == totals[2] and overall["slices"] == 3
    np.testing.assert_allclose(overall["model_mse"], totals[0] / totals[2], rtol=1e-5)
    np.testing.assert_allclose(overall["linear_mse"], totals[1] / totals[2], rtol=1e-5)


def _reference_thick_errors(stack, sampling):
    """np.interp through the slice centres, and the identity model's output made
    consistent with the slices by the pseudo-inverse (np.linalg.pinv)."""
    from sparselayers.mri.slice_profile import forward_matrix

    model_error = linear_error = voxels = 0
    margin = int(np.ceil(sampling.profile.reach() + sampling.spacing))
    for truth in stack:
        for oriented in (truth, truth.T):
            rows = np.arange(oriented.shape[0])
            for fraction in self_validation.THICK_OFFSETS:
                centres = np.arange(fraction * sampling.spacing, len(rows) - 0.5,
                                    sampling.spacing)
                weights = forward_matrix(sampling.profile, centres, len(rows))
                slices = weights @ oriented.astype(np.float64)
                linear = np.stack([np.interp(rows, centres, slices[:, column])
                                   for column in range(oriented.shape[1])], axis=1)
                restored = linear + np.linalg.pinv(weights) @ (slices - weights @ linear)
                inside = (rows >= max(centres[0], margin)) & (
                    rows <= min(centres[-1], len(rows) - 1 - margin))
                scored = inside[:, None] & (oriented > FOREGROUND)
                model_error += np.sum((restored - oriented)[scored] ** 2)
                linear_error += np.sum((linear - oriented)[scored] ** 2)
                voxels += np.count_nonzero(scored)
    return model_error, linear_error, voxels


def test_thick_slice_errors_match_a_numpy_reference(rng):
    """The identity model's output, made consistent with the thick slices (as
    `restore_volume` does), against linear interpolation through the centres."""
    stack = rng.uniform(0.2, 1, (2, 40, 30)).astype(np.float32)
    sampling = RowSampling(3.0, SliceProfile("box", 3.0))
    scores = self_validation.validate(identity_model(), [stack], [sampling])["inputs"][0]
    model_error, linear_error, voxels = _reference_thick_errors(stack, sampling)
    assert scores["voxels"] == voxels > 0
    np.testing.assert_allclose(scores["model_mse"], model_error / voxels, rtol=1e-4)
    np.testing.assert_allclose(scores["linear_mse"], linear_error / voxels, rtol=1e-4)
    # Consistency with the slices alone beats interpolation (it deblurs).
    assert scores["improvement"] > 0
    empty = self_validation.validate(identity_model(), [stack[:0]], [sampling])
    assert empty["inputs"] == [None] and empty["overall"] is None
    assert "no held-out slices" in self_validation.summary_line(None)


def test_held_out_slices_are_never_trained_on_and_reported(tmp_path):
    sparse, _ = sparse_copy(smooth_volume((20, 24, 27), 3), 2, 3, 0)
    path = tmp_path / "scan.nii.gz"
    write_nifti(path, sparse)
    prepared = [PreparedVolume(str(path))]
    count = int(prepared[0].acquisition.acquired.sum())
    held = [self_validation.held_out_slices(count, 0.2)]
    all_slices = prepared[0].slices()
    training = SliceStacks(prepared, held)[0]
    assert len(training) == count - len(held[0]) == 7
    kept = np.setdiff1d(np.arange(count), held[0])
    assert np.array_equal(training, all_slices[kept])
    outputs = mri.impute_slices([path], tmp_path / "out", steps=2, steps_per_epoch=2,
                                patch_size=12, filters=4, verbose=0, validation_share=0.2)
    with open(tmp_path / "out" / "self_validation.json") as file:
        written = json.load(file)
    scores = written["inputs"][str(path)]
    assert scores["slices"] == 2 and written["overall"]["voxels"] == scores["voxels"] > 0
    assert outputs[str(path)].endswith("scan_imputed.nii.gz")
    mri.impute_slices([path], tmp_path / "none", steps=2, steps_per_epoch=2, patch_size=12,
                      filters=4, verbose=0, validation_share=0)
    with open(tmp_path / "none" / "self_validation.json") as file:
        assert json.load(file)["overall"] is None
    with pytest.raises(ValueError, match="--validation-share must be a number in"):
        mri.impute_slices([path], tmp_path / "bad", steps=2, validation_share=0.9)
    assert not (tmp_path / "bad").exists()
