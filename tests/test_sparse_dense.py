import keras
import numpy as np
import pytest
import tensorflow as tf

import references
from sparselayers import SparseDense


def _layer(image_shape, mask_shape, units, rng, regularization=1e-3, use_bias=True):
    layer = SparseDense(units, regularization=regularization, use_bias=use_bias)
    layer.build([(None,) + image_shape, (None,) + mask_shape])
    layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
    if use_bias:
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    return layer


@pytest.mark.parametrize("mask_channels", ["full", "one"])
@pytest.mark.parametrize("regularization", [0.0, 0.3])
@pytest.mark.parametrize("use_bias", [True, False])
def test_matches_per_sample_numpy_solve(rng, mask_channels, regularization, use_bias):
    image = rng.normal(size=(6, 5, 4, 3)).astype("float32")
    mask_shape = (5, 4, 3) if mask_channels == "full" else (5, 4, 1)
    mask = (rng.random((6,) + mask_shape) < 0.6).astype("float32")
    layer = _layer((5, 4, 3), mask_shape, 7, rng, regularization, use_bias)
    got = layer([image, mask]).numpy()
    bias = layer.bias.numpy() if use_bias else None
    want = references.sparse_dense(image, mask, layer.kernel.numpy(), bias, regularization)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)


def test_bool_mask_and_flat_input(rng):
    image = rng.normal(size=(4, 30)).astype("float32")
    mask = rng.random((4, 30)) < 0.5
    layer = _layer((30,), (30,), 5, rng)
    got = layer([image, mask]).numpy()
    want = references.sparse_dense(image, mask, layer.kernel.numpy(), layer.bias.numpy(), 1e-3)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)


def test_nan_and_inf_at_missing_entries_do_not_leak(rng):
    image = rng.normal(size=(5, 40)).astype("float32")
    mask = (rng.random((5, 40)) < 0.5).astype("float32")
    dirty = image.copy()
    dirty[mask == 0] = np.where(rng.random((mask == 0).sum()) < 0.5, np.nan, np.inf)
    layer = _layer((40,), (40,), 6, rng)
    dirty_tensor = tf.constant(dirty)
    with tf.GradientTape() as tape:
        tape.watch(dirty_tensor)
        out = layer([dirty_tensor, mask])
        loss = tf.reduce_sum(out**2)
    grads = tape.gradient(loss, [dirty_tensor] + layer.trainable_weights)
    np.testing.assert_allclose(out.numpy(), layer([image, mask]).numpy(), rtol=1e-6)
    for grad in grads:
        assert np.all(np.isfinite(grad.numpy()))
    assert np.all(grads[0].numpy()[mask == 0] == 0.0)


def test_all_missing_sample_returns_zeros(rng):
    image = rng.normal(size=(3, 20)).astype("float32")
    mask = (rng.random((3, 20)) < 0.5).astype("float32")
    mask[1] = 0.0
    image[1] = np.nan
    layer = _layer((20,), (20,), 4, rng, regularization=0.0)
    out = layer([image, mask]).numpy()
    np.testing.assert_array_equal(out[1], np.zeros(4))
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("observed_count", [1, 3, 9])
def test_rank_deficient_with_zero_regularization_is_finite_and_matches(rng, observed_count):
    units = 10
    image = rng.normal(size=(4, 50)).astype("float32")
    mask = np.zeros((4, 50), "float32")
    for sample in range(4):
        mask[sample, rng.choice(50, observed_count, replace=False)] = 1.0
    layer = _layer((50,), (50,), units, rng, regularization=0.0)
    # Duplicate a column too: W itself rank-deficient.
    kernel = layer.kernel.numpy()
    kernel[:, 1] = kernel[:, 0]
    layer.kernel.assign(kernel)
    out = layer([image, mask]).numpy()
    assert np.all(np.isfinite(out))
    want = references.sparse_dense(image, mask, kernel, layer.bias.numpy(), 0.0)
    # The floor regularises a singular system: compare the fitted values
    # W_O r, which are well determined, rather than r itself.
    for sample in range(4):
        rows = mask[sample] > 0
        np.testing.assert_allclose(
            kernel[rows] @ out[sample], kernel[rows] @ want[sample], rtol=1e-2, atol=1e-2
        )


def test_gradients_match_autodiff_of_dense_formulation(rng):
    """Custom gradient vs automatic differentiation of an explicit solve."""
    image = rng.normal(size=(5, 12)).astype("float32")
    mask = (rng.random((5, 12)) < 0.7).astype("float32")
    layer = SparseDense(4, regularization=0.2, trainable_regularization=True)
    layer.build([(None, 12), (None, 12)])
    weights = np.asarray(rng.normal(size=(1, 4)), "float32")

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer([image, mask]) * weights)
    got = tape.gradient(loss, [layer.kernel, layer.bias, layer.regularization_weight])

    kernel = tf.Variable(layer.kernel.numpy())
    bias = tf.Variable(layer.bias.numpy())
    lam = tf.Variable(0.2)
    with tf.GradientTape() as tape:
        masked_kernel = mask[:, :, None] * kernel[None]  # (B, D, U): fine, small
        gram = tf.matmul(masked_kernel, masked_kernel, transpose_a=True)
        floor = 1e-5 * tf.stop_gradient(tf.linalg.trace(gram)) / 4 + 1e-6
        system = gram + (lam + floor)[:, None, None] * tf.eye(4)
        rhs = tf.einsum("bdu,bd->bu", masked_kernel, image - bias)
        response = tf.linalg.solve(system, rhs[..., None])[..., 0]
        loss = tf.reduce_sum(response * weights)
    want = tape.gradient(loss, [kernel, bias, lam])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=2e-3, atol=2e-4)


def test_finite_difference_gradient_of_kernel(rng):
    image = rng.normal(size=(3, 8))
    mask = rng.random((3, 8)) < 0.7
    layer = SparseDense(3, regularization=0.1, dtype="float64")
    layer.build([(None, 8), (None, 8)])
    kernel = layer.kernel.numpy()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer([image, mask]) ** 2)
    grad = tape.gradient(loss, layer.kernel).numpy()

    def numpy_loss(k):
        return np.sum(references.sparse_dense(image, mask, k, layer.bias.numpy(), 0.1) ** 2)

    for index in [(0, 0), (3, 1), (7, 2)]:
        step = np.zeros_like(kernel)
        step[index] = 1e-6
        numeric = (numpy_loss(kernel + step) - numpy_loss(kernel - step)) / 2e-6
        # rtol 1e-3: the layer's gradient treats the tiny floor (1e-5 of the
        # mean Gram diagonal) as a constant; finite differences do not.
        np.testing.assert_allclose(grad[index], numeric, rtol=1e-3, atol=1e-6)


def test_decode_is_w_r_plus_mu(rng):
    layer = _layer((6, 5, 1), (6, 5, 1), 3, rng)
    response = rng.normal(size=(4, 3)).astype("float32")
    decoded = layer.decode(response).numpy()
    want = (response @ layer.kernel.numpy().T + layer.bias.numpy()).reshape(4, 6, 5, 1)
    np.testing.assert_allclose(decoded, want, rtol=1e-5, atol=1e-5)


def test_linear_subspace_recovers_images_in_the_subspace(rng):
    """Eq. 15: an image in span(W) + mu is recovered from a few pixels."""
    kernel = rng.normal(size=(64, 4)).astype("float32")
    mu = rng.normal(size=64).astype("float32")
    codes = rng.normal(size=(10, 4)).astype("float32")
    images = codes @ kernel.T + mu
    mask = (rng.random((10, 64)) < 0.3).astype("float32")
    layer = SparseDense(4, regularization=0.0)
    layer.build([(None, 64), (None, 64)])
    layer.kernel.assign(kernel)
    layer.bias.assign(mu)
    imputed = layer.decode(layer([images, mask])).numpy()
    np.testing.assert_allclose(imputed, images, rtol=1e-3, atol=1e-3)


def test_trainable_regularization_stays_non_negative(rng):
    image = rng.normal(size=(16, 10)).astype("float32")
    mask = (rng.random((16, 10)) < 0.5).astype("float32")
    layer = SparseDense(3, regularization=0.01, trainable_regularization=True)
    layer.build([(None, 10), (None, 10)])
    assert any(w is layer.regularization_weight for w in layer.trainable_weights)
    optimizer = keras.optimizers.SGD(10.0)
    for _ in range(5):
        with tf.GradientTape() as tape:
            # Pushes lambda down hard: the loss grows with the response norm.
            loss = -tf.reduce_sum(layer([image, mask]) ** 2)
        grads = tape.gradient(loss, layer.trainable_weights)
        optimizer.apply_gradients(zip(grads, layer.trainable_weights))
    assert float(layer.regularization_weight.numpy()) >= 0.0
    assert np.all(np.isfinite(layer([image, mask]).numpy()))


def test_fixed_regularization_is_not_trainable():
    layer = SparseDense(3)
    layer.build([(None, 10), (None, 10)])
    assert all(w is not layer.regularization_weight for w in layer.trainable_weights)
    assert [w.shape for w in layer.trainable_weights] == [(10, 3), (10,)]


@pytest.mark.parametrize(
    "shapes, message",
    [
        ([(None, 4, 4, 2), (None, 4, 5, 2)], "differ on axis 2"),
        ([(None, 4, 4, 2), (None, 16, 2)], "rank"),
        ([(None, 4, 4, 3), (None, 4, 4, 2)], "1 channel or the image's 3"),
        ([(None, 4, 4, 3)], r"\[image, mask\]"),
        ([(None, 4), (None, 4), (None, 4)], r"\[image, mask\]"),
        ([(None, None), (None, None)], "known at build time"),
    ],
)
def test_bad_shapes_fail_at_build(shapes, message):
    with pytest.raises(ValueError, match=message):
        SparseDense(3).build(shapes)


def test_bad_shapes_fail_in_functional_model():
    image = keras.Input((4, 4, 3))
    mask = keras.Input((4, 4, 2))
    with pytest.raises(ValueError, match=r"\(None, 4, 4, 3\).*\(None, 4, 4, 2\)"):
        SparseDense(3)([image, mask])


@pytest.mark.parametrize("units", [0, -2, 2.5, None])
def test_bad_units(units):
    with pytest.raises(ValueError, match="units"):
        SparseDense(units)


def test_negative_regularization():
    with pytest.raises(ValueError, match="regularization=-1"):
        SparseDense(3, regularization=-1.0)


def test_config_round_trip():
    layer = SparseDense(
        5, regularization=0.5, trainable_regularization=True, use_bias=False,
        activation="tanh", kernel_initializer="he_normal", name="sd",
    )
    clone = SparseDense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.units == 5 and clone.regularization == 0.5 and not clone.use_bias
    assert clone.trainable_regularization


def test_compute_output_shape():
    layer = SparseDense(7)
    assert layer.compute_output_shape([(None, 3, 3, 2), (None, 3, 3, 1)]) == (None, 7)
