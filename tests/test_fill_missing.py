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
