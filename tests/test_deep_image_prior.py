import keras
import numpy as np
import pytest

import imputers


def _generator():
    return keras.Sequential([
        keras.Input((4, 4, 2)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.UpSampling2D(2),
        keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid"),
    ])


def _images(rng, count=3):
    grid = np.linspace(0, 1, 8)
    images = np.stack([
        0.5 + 0.4 * np.sin(3 * (grid[:, None] + phase)) * np.cos(2 * grid[None, :])
        for phase in rng.random(count)
    ])[..., None].astype("float32")
    mask = (rng.random(images.shape) < 0.5).astype("float32")
    return images, mask


@pytest.mark.parametrize("batched", [True, False])
def test_dip_lowers_observed_loss_and_keeps_observed(rng, batched):
    images, mask = _images(rng)
    network = _generator()
    before = network.get_weights()
    dirty = np.where(mask > 0, images, np.nan)
    imputed, history = imputers.fit_dip(
        network, dirty, mask, steps=150, learning_rate=0.02, seed=0, batched=batched,
        verbose=0, return_history=True,
    )
    assert history.shape[1] == 3
    assert np.all(history[-1] < 0.3 * history[0])
    np.testing.assert_array_equal(imputed[mask > 0], images[mask > 0])
    assert np.all(np.isfinite(imputed)) and imputed.shape == images.shape
    # The given network is left untouched.
    for old, new in zip(before, network.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_dip_each_image_has_its_own_weights(rng):
    """Batched fitting equals fitting each image alone (same seeds per image)."""
    images, mask = _images(rng, 2)
    # Identical images and masks: with per-image parameters both fits reach a
    # low loss each; a shared model would be fitted to both at once.
    images[1] = 1.0 - images[0]
    mask[1] = mask[0]
    _, history = imputers.fit_dip(
        _generator(), images, mask, steps=150, learning_rate=0.02, seed=1, verbose=0,
        return_history=True,
    )
    assert np.all(history[-1] < 0.3 * history[0])


def test_dip_all_missing_image_is_finite(rng):
    images, mask = _images(rng, 2)
    mask[1] = 0.0
    imputed = imputers.fit_dip(_generator(), images, mask, steps=5, seed=0, verbose=0)
    assert np.all(np.isfinite(imputed))


def test_dip_bad_input(rng):
    images, mask = _images(rng, 2)
    with pytest.raises(ValueError, match=r"output shape \(batch,\) \+ \(8, 8, 1\) differs"):
        imputers.fit_dip(_generator(), images[:, :4, :4], mask[:, :4, :4], steps=1, verbose=0)
    with pytest.raises(ValueError, match="mask shape"):
        imputers.fit_dip(_generator(), images, mask[:, :4], steps=1, verbose=0)
