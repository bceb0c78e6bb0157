import numpy as np
import pytest

import sparselayers as sl


def test_interpolate_rows_matches_numpy_interp(rng):
    image = rng.random((3, 5, 9, 2)).astype("float32")
    observed = rng.random(image.shape) < 0.4
    observed[0, 0, :, 0] = False  # empty row
    observed[1, 1, :, 1] = False
    observed[1, 1, 3, 1] = True  # single observed entry
    got = sl.interpolate_rows(np.where(observed, image, np.nan), observed).numpy()
    for b in range(3):
        for i in range(5):
            for c in range(2):
                positions = np.flatnonzero(observed[b, i, :, c])
                want = (np.zeros(9) if len(positions) == 0
                        else np.interp(np.arange(9), positions, image[b, i, positions, c]))
                np.testing.assert_allclose(got[b, i, :, c], want, rtol=1e-6, atol=1e-6)


def test_fill_missing_modes(rng):
    image = rng.random((4, 6, 6, 1)).astype("float32")
    mask = (rng.random(image.shape) < 0.5).astype("float32")
    mask[0, 2] = 0.0  # an empty row: interp falls back to the mean
    sparse = np.where(mask > 0, image, np.nan)
    zero = sl.FillMissing("zero")([sparse, mask]).numpy()
    np.testing.assert_array_equal(zero, np.where(mask > 0, image, 0.0))
    mean_layer = sl.FillMissing("mean")
    mean_layer.adapt(sparse, mask)
    pixel_mean = np.nansum(sparse, axis=0) / np.maximum((mask > 0).sum(axis=0), 1)
    pixel_mean = np.where((mask > 0).sum(axis=0) > 0, pixel_mean, image[mask > 0].mean())
    np.testing.assert_allclose(mean_layer([sparse, mask]).numpy(),
                               np.where(mask > 0, image, pixel_mean), rtol=1e-5)
    interp = sl.FillMissing("interp", append_mask=True, pixel_mean=pixel_mean)([sparse, mask]).numpy()
    assert interp.shape == (4, 6, 6, 2)
    np.testing.assert_array_equal(interp[..., 1], mask[..., 0])
    np.testing.assert_allclose(interp[0, 2, :, 0], pixel_mean[2, :, 0], rtol=1e-6)
    assert np.all(np.isfinite(interp))
    with pytest.raises(ValueError, match="method must be"):
        sl.FillMissing("median")


@pytest.mark.parametrize("axis", [1, 2, -3, -2])
def test_interpolate_along_any_axis_matches_numpy_interp(rng, axis):
    image = rng.random((2, 7, 8, 2)).astype("float32")
    observed = rng.random(image.shape) < 0.4
    observed[0, :, 3, 0] = False  # an empty line along axis 1
    observed[1, 2, :, 1] = False  # an empty line along axis 2
    got = sl.interpolate_along(np.where(observed, image, np.nan), observed, axis=axis,
                               fill_value=-1.0).numpy()
    moved_image = np.moveaxis(image, axis, -1)
    moved_observed = np.moveaxis(observed, axis, -1)
    moved_got = np.moveaxis(got, axis, -1)
    for index in np.ndindex(moved_image.shape[:-1]):
        positions = np.flatnonzero(moved_observed[index])
        length = moved_image.shape[-1]
        want = (np.full(length, -1.0) if len(positions) == 0
                else np.interp(np.arange(length), positions, moved_image[index][positions]))
        np.testing.assert_allclose(moved_got[index], want, rtol=1e-6, atol=1e-6)


def test_fill_missing_interp_along_acquisition_axis_is_not_conv_zero(rng):
    # Every 3rd row observed (thick slices along H): the default row-wise
    # interpolation finds nothing to interpolate in a missing row; axis=1 does.
    image = rng.random((2, 9, 5, 1)).astype("float32")
    mask = np.zeros_like(image)
    mask[:, ::3] = 1.0
    sparse = np.where(mask > 0, image, np.nan)
    filled = sl.FillMissing("interp", axis=1)([sparse, mask]).numpy()
    want = np.empty_like(image)
    for b in range(2):
        for j in range(5):
            want[b, :, j, 0] = np.interp(np.arange(9), np.arange(0, 9, 3), image[b, ::3, j, 0])
    np.testing.assert_allclose(filled, want, rtol=1e-6, atol=1e-6)
    assert np.abs(filled[:, 1]).min() > 0  # not zero-filled
    layer = sl.FillMissing.from_config(sl.FillMissing("interp", axis=1).get_config())
    assert layer.axis == 1


def test_fill_missing_interp_both_axes(rng):
    image = rng.random((1, 6, 6, 1)).astype("float32")
    mask = (rng.random(image.shape) < 0.5).astype("float32")
    mask[0, 0, :, 0] = 0.0  # row 0 empty: only the column interpolation counts there
    sparse = np.where(mask > 0, image, np.nan)
    filled = sl.FillMissing("interp", axis="both")([sparse, mask]).numpy()[0, :, :, 0]
    observed = mask[0, :, :, 0] > 0
    for i in range(6):
        for j in range(6):
            if observed[i, j]:
                assert filled[i, j] == image[0, i, j, 0]
                continue
            estimates = []
            for line, seen, position in ((image[0, i, :, 0], observed[i], j),
                                         (image[0, :, j, 0], observed[:, j], i)):
                if seen.any():
                    points = np.flatnonzero(seen)
                    estimates.append(np.interp(position, points, line[points]))
            want = np.mean(estimates) if estimates else 0.0
            np.testing.assert_allclose(filled[i, j], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="axis"):
        sl.FillMissing("interp", axis=0)
    with pytest.raises(ValueError, match="not an axis to interpolate along"):
        sl.FillMissing("interp", axis=3)([image, mask])


def test_conv_interp_variants_interpolate_along_the_given_axis(rng):
    """build_variant(..., axis=1): thick-slice cuts are interpolated, not zero-filled."""
    image = rng.random((2, 8, 8, 1)).astype("float32")
    mask = np.zeros_like(image)
    mask[:, ::3] = 1.0
    for name in ("conv-interp", "conv-interp-wmask"):
        model = sl.build_variant(name, (8, 8, 1), 3, filters=4, levels=2, axis=1)
        fill = model.encoder.get_layer("fill")
        assert fill.axis == 1
        filled = fill([np.where(mask > 0, image, np.nan), mask]).numpy()[..., 0]
        want = np.stack([[np.interp(np.arange(8), np.arange(0, 8, 3), image[b, ::3, j, 0])
                          for j in range(8)] for b in range(2)]).transpose(0, 2, 1)
        np.testing.assert_allclose(filled, want, rtol=1e-6, atol=1e-6)
        default = sl.build_variant(name, (8, 8, 1), 3, filters=4, levels=2)
        assert default.encoder.get_layer("fill").axis == -2  # rows, as before


def test_appended_mask_values_are_the_mask_where_observed():
    FillMissing = sl.FillMissing
    rng = np.random.default_rng(7)
    image = rng.normal(size=(2, 6, 5, 1)).astype(np.float32)
    mask = rng.choice([0.0, 0.3, 0.6, 0.9, 1.0, np.nan], size=(2, 6, 5, 1)).astype(np.float32)
    values = FillMissing("zero", append_mask=True, mask_channel="values")([image, mask])
    binary = FillMissing("zero", append_mask=True)([image, mask])
    observed = np.nan_to_num(mask, nan=0.0) > 0.5
    np.testing.assert_array_equal(np.asarray(values)[..., 1:], np.where(observed, mask, 0.0))
    np.testing.assert_array_equal(np.asarray(binary)[..., 1:], observed.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(values)[..., :1], np.asarray(binary)[..., :1])
    restored = FillMissing.from_config(
        FillMissing("interp", append_mask=True, mask_channel="values").get_config())
    assert restored.mask_channel == "values"
    with pytest.raises(ValueError, match="mask_channel must be 'binary' or 'values'"):
        FillMissing(mask_channel="soft")
