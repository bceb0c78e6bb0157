"""`imputers.train_denoising_autoencoder` and its corruption (issue 24)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

import imputers
from imputers.denoising_training import HoleCorruption


def _patterns(count=4, side=8, seed=0):
    return (np.random.default_rng(seed).random((count, side, side, 1)) > 0.5).astype("float32")


def _draw(patterns, n, seed):
    """n images: one of the patterns each, plus a little noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    images = patterns[rng.integers(0, len(patterns), n)] + 0.05 * rng.normal(size=(n, 8, 8, 1))
    return np.clip(images, 0, 1).astype("float32")


def _tiny_autoencoder(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(64, activation="sigmoid"),
        keras.layers.Reshape((8, 8, 1))])


def _hole_masks(n, seed, side=4):
    mask = np.ones((n, 8, 8, 1), "float32")
    rng = np.random.default_rng(seed)
    for index in range(n):
        top, left = rng.integers(0, 8 - side + 1, 2)
        mask[index, top:top + side, left:left + side] = 0
    return mask


def _corrupt(clean, seed=0, prefilled=None, **options):
    layer = HoleCorruption(seed=seed, **options)
    inputs = clean if prefilled is None else (clean, prefilled)
    return layer(inputs, training=True).numpy()


def test_ascent_from_noise_and_mean_recovers_the_pattern():
    patterns = _patterns()
    train, test = _draw(patterns, 2000, 1), _draw(patterns, 200, 2)
    model = _tiny_autoencoder()
    history = imputers.train_denoising_autoencoder(
        model, train, epochs=20, hole_sides=(2, 5), loss="binary_crossentropy", verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    mask = _hole_masks(len(test), 3)
    sparse = np.where(mask > 0, test, np.nan).astype("float32")
    missing = mask == 0
    for init in ("noise", "mean"):
        start = (imputers.noise_fill(sparse, mask, seed=0) if init == "noise"
                 else imputers.mean_fill(sparse, mask, reference=train)).numpy()
        imputed = np.asarray(imputers.vector_field_ascent(
            model, sparse, mask, init=init, reference=train, seed=0, step_size=0.3,
            max_steps=50))
        start_error = np.mean((start - test)[missing] ** 2)
        error = np.mean((imputed - test)[missing] ** 2)
        # From either start the ascent lands on the sample's own pattern: its
        # error is a tenth of the start's or less (measured: about 1/40).
        assert error < 0.1 * start_error, (init, error, start_error)
        assert np.array_equal(imputed[~missing], test[~missing])


def _one_square(inside):
    """(top, left, side) of the single True square of a 2-D bool array."""
    rows, cols = np.nonzero(inside)
    side = rows.max() - rows.min() + 1
    assert cols.max() - cols.min() + 1 == side and inside.sum() == side * side
    return rows.min(), cols.min(), side


def test_noise_fill_is_uniform_inside_one_square_and_clean_outside():
    clean = np.random.default_rng(0).random((400, 16, 16, 1)).astype("float32") * 0.5 + 0.25
    out = _corrupt(clean, fills={"noise": 1.0}, hole_sides=(3, 7), noise=0.0,
                   value_range=(-1.0, 2.0))
    changed = out != clean
    inside_values = []
    for index in range(len(clean)):
        top, left, side = _one_square(changed[index, ..., 0])
        assert 3 <= side <= 7
        inside_values.append(out[index, top:top + side, left:left + side].ravel())
    inside_values = np.concatenate(inside_values)
    assert inside_values.min() >= -1.0 and inside_values.max() < 2.0
    # Uniform on [-1, 2): mean 0.5, std 3 / sqrt(12).
    assert abs(inside_values.mean() - 0.5) < 0.05
    assert abs(inside_values.std() - 3 / np.sqrt(12)) < 0.05


def test_mean_zero_and_prefilled_fills():
    rng = np.random.default_rng(1)
    clean = rng.random((64, 10, 10, 2)).astype("float32")
    out = _corrupt(clean, fills={"mean": 1.0}, noise=0.0)
    batch_mean = clean.mean(axis=0)
    changed = np.any(out != clean, axis=-1)
    for index in range(len(clean)):
        top, left, side = _one_square(changed[index])
        np.testing.assert_allclose(out[index, top:top + side, left:left + side],
                                   batch_mean[top:top + side, left:left + side], rtol=1e-6)
    out = _corrupt(clean, fills={"zero": 1.0}, noise=0.0)
    assert np.all((out == 0) | (out == clean)) and np.any(out == 0)
    prefilled = rng.random(clean.shape).astype("float32")
    out = _corrupt(clean, prefilled=prefilled, fills={"prefilled": 1.0}, noise=0.0)
    assert np.array_equal(out, prefilled)


def test_blur_fill_matches_a_scipy_gaussian_blur():
    clean = np.random.default_rng(2).random((8, 20, 20, 2)).astype("float32")
    out = _corrupt(clean, fills={"blur": 1.0}, noise=0.0, hole_sides=(6, 6))
    taps = np.exp(-0.5 * (np.arange(-3, 4) / 1.5) ** 2)
    kernel = np.outer(taps, taps) / np.outer(taps, taps).sum()
    for index in range(len(clean)):
        changed = np.any(out[index] != clean[index], axis=-1)
        top, left, side = _one_square(changed)
        for channel in range(2):
            blurred = ndimage.convolve(clean[index, ..., channel].astype(np.float64), kernel,
                                       mode="constant")  # zero padding, as "SAME"
            np.testing.assert_allclose(out[index, top:top + side, left:left + side, channel],
                                       blurred[top:top + side, left:left + side], atol=1e-5)


def test_noisy_fill_scale_and_the_overall_noise():
    clean = np.full((2000, 12, 12, 1), 0.5, "float32")
    out = _corrupt(clean, fills={"noisy": 1.0}, noise_scales=(0.2, 0.2), noise=0.0,
                   hole_sides=(4, 4))
    residual = (out - clean)[out != clean]
    assert len(residual) > 0.99 * 2000 * 16
    assert abs(residual.std() - 0.2) < 0.005 and abs(residual.mean()) < 0.005
    out = _corrupt(clean, fills={"zero": 1.0}, noise=0.1, hole_sides=(1, 1))
    outside = (out - clean)[np.abs(out) > 0.2]  # the zeroed pixel is near -0.5
    assert abs(outside.std() - 0.1) < 0.005


def test_fills_are_drawn_in_their_shares_and_reproducibly():
    clean = np.full((4000, 6, 6, 1), 0.5, "float32")
    out = _corrupt(clean, fills={"zero": 1.0, "noise": 3.0}, noise=0.0,
                   value_range=(0.6, 1.0), seed=3)
    zeroed = np.any(out == 0, axis=(1, 2, 3))
    assert abs(zeroed.mean() - 0.25) < 0.03
    assert np.array_equal(out, _corrupt(clean, fills={"zero": 1.0, "noise": 3.0}, noise=0.0,
                                        value_range=(0.6, 1.0), seed=3))
    assert not np.array_equal(out, _corrupt(clean, fills={"zero": 1.0, "noise": 3.0}, noise=0.0,
                                            value_range=(0.6, 1.0), seed=4))


def test_inference_returns_the_clean_images_and_config_round_trips():
    layer = HoleCorruption(fills={"noise": 2.0, "zero": 1.0}, hole_sides=(2, 3),
                           noise_scales=(0.1, 0.3), noise=0.01, value_range=(0.0, 1.0), seed=5)
    clean = np.random.default_rng(0).random((3, 8, 8, 1)).astype("float32")
    assert np.array_equal(layer(clean).numpy(), clean)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert again.get_config() == layer.get_config()
    assert again.fills == {"noise": 2.0, "zero": 1.0} and again.hole_sides == (2, 3)


def test_streamed_dataset_and_iterator_train_the_model():
    patterns = _patterns()
    train = _draw(patterns, 512, 4)
    knn_like = np.where(_hole_masks(512, 5) > 0, train, 0.5).astype("float32")
    for source in ("dataset", "pairs", "iterator"):
        model = _tiny_autoencoder()
        before = [w.copy() for w in model.get_weights()]
        if source == "dataset":
            data = tf.data.Dataset.from_tensor_slices(train).batch(64).repeat()
            options = dict(steps_per_epoch=8)
        elif source == "pairs":  # a finite dataset: its length is the epoch
            data = tf.data.Dataset.from_tensor_slices((train, knn_like)).batch(64)
            options = dict(fills={"prefilled": 1.0, "noise": 1.0})
        else:
            data = (train[i:i + 64] for i in range(0, 512, 64))
            options = dict(steps_per_epoch=8)
        history = imputers.train_denoising_autoencoder(model, data, epochs=1, verbose=0,
                                                       **options)
        assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
        assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())), source


@pytest.mark.parametrize("options, message", [
    (dict(fills={"speckle": 1.0}), "Unknown fill 'speckle'"),
    (dict(fills={"noise": -1.0}), r"fills\['noise'\]"),
    (dict(fills={"noise": 0.0}), "positive weight"),
    (dict(fills={"prefilled": 1.0}), "no prefilled images"),
    (dict(hole_sides=(0, 3)), "hole_sides"),
    (dict(hole_sides=(5, 3)), "low < high"),
    (dict(noise_scales=(0.5, float("nan"))), "noise_scales"),
    (dict(noise=-0.1), "noise must be"),
    (dict(value_range=(1.0, 1.0)), "value_range"),
    (dict(epochs=0), "epochs"),
    (dict(seed=-1), "seed"),
    (dict(learning_rate=float("inf")), "learning_rate"),
])
def test_bad_settings_are_refused_before_training(options, message):
    model = _tiny_autoencoder()
    before = [w.copy() for w in model.get_weights()]
    images = _draw(_patterns(), 32, 0)
    with pytest.raises(ValueError, match=message):
        imputers.train_denoising_autoencoder(model, images, verbose=0, **options)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_bad_images_are_named():
    model = _tiny_autoencoder()
    images = _draw(_patterns(), 32, 0)
    images[7, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match="training image 7"):
        imputers.train_denoising_autoencoder(model, images, verbose=0)
    with pytest.raises(ValueError, match=r"shape \(32, 64\)"):
        imputers.train_denoising_autoencoder(model, images.reshape(32, 64), verbose=0)
    clean = _draw(_patterns(), 32, 0)
    with pytest.raises(ValueError, match="prefilled has shape"):
        imputers.train_denoising_autoencoder(model, clean, prefilled=clean[:5], verbose=0)
    endless = tf.data.Dataset.from_tensor_slices(clean).batch(8).repeat()
    with pytest.raises(ValueError, match="steps_per_epoch"):
        imputers.train_denoising_autoencoder(model, endless, verbose=0)


def test_random_squares_from_a_tf_generator_and_a_seed_generator():
    from imputers.denoising_training import random_squares

    for make in (lambda: tf.random.Generator.from_seed(7), lambda: keras.random.SeedGenerator(7)):
        inside = random_squares(300, 9, 12, 2, 5, seed=make()).numpy()
        assert inside.shape == (300, 9, 12, 1)
        sides = [_one_square(square[..., 0])[2] for square in inside]
        assert set(sides) == {2, 3, 4, 5}
        assert np.array_equal(inside, random_squares(300, 9, 12, 2, 5, seed=make()).numpy())
    # A side larger than the image is clipped to it.
    assert random_squares(4, 3, 6, 5, 5).numpy().sum(axis=(1, 2, 3)).tolist() == [9] * 4
