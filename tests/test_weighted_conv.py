import keras
import numpy as np
import pytest
import tensorflow as tf

import references
from sparselayers import WeightedConv1D, WeightedConv2D, WeightedConv3D

LAYERS = {1: WeightedConv1D, 2: WeightedConv2D, 3: WeightedConv3D}
KERAS_CONVS = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
SPATIAL = {1: (11,), 2: (7, 6), 3: (5, 6, 4)}


def _random_layer(rank, rng, filters=3, channels=2, mask_channels=1, **kwargs):
    layer = LAYERS[rank](filters, **kwargs)
    shape = (None,) + SPATIAL[rank]
    layer.build([shape + (channels,), shape + (mask_channels,)])
    layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
    if layer.use_bias:
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    return layer


CASES = [
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=3, padding="valid"),
    dict(kernel_size=2, strides=2, padding="same"),
    dict(kernel_size=3, strides=2, padding="valid"),
    dict(kernel_size=2, dilation_rate=2, padding="same"),
    dict(kernel_size=3, padding="same", use_bias=False),
]


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mask_channels", [1, 2])
def test_matches_loop_reference(rng, rank, case, mask_channels):
    layer = _random_layer(rank, rng, mask_channels=mask_channels, **case)
    image = rng.normal(size=(2,) + SPATIAL[rank] + (2,)).astype("float32")
    mask = (rng.random((2,) + SPATIAL[rank] + (mask_channels,)) < 0.3).astype("float32")
    out, new_mask = layer([image, mask])
    bias = layer.bias.numpy() if layer.use_bias else None
    want, want_mask = references.weighted_conv(
        image, mask, layer.kernel.numpy(), bias, layer.strides, layer.padding,
        layer.dilation_rate,
    )
    assert out.shape == want.shape and new_mask.shape == want_mask.shape
    np.testing.assert_array_equal(new_mask.numpy(), want_mask)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_all_ones_mask_valid_padding_equals_keras_conv(rng, rank):
    layer = _random_layer(rank, rng, kernel_size=3, padding="valid", mask_channels=2)
    conv = KERAS_CONVS[rank](3, 3, padding="valid")
    image = rng.normal(size=(2,) + SPATIAL[rank] + (2,)).astype("float32")
    conv.build(image.shape)
    conv.set_weights(layer.get_weights())
    out, new_mask = layer([image, np.ones_like(image)])
    np.testing.assert_allclose(out.numpy(), conv(image).numpy(), rtol=1e-5, atol=1e-5)
    assert np.all(new_mask.numpy() == 1.0)


def test_nan_at_missing_entries_and_gradients(rng):
    layer = _random_layer(2, rng, kernel_size=3, activation="relu")
    image = rng.normal(size=(2, 7, 6, 2)).astype("float32")
    mask = (rng.random((2, 7, 6, 1)) < 0.4).astype("float32")
    dirty = np.where(mask > 0, image, np.nan).astype("float32")
    dirty[0, 0, 0, 0] = np.inf if mask[0, 0, 0, 0] == 0 else dirty[0, 0, 0, 0]
    dirty = tf.constant(dirty)
    with tf.GradientTape() as tape:
        tape.watch(dirty)
        out, _ = layer([dirty, mask > 0.5])
        loss = tf.reduce_sum(out**2)
    grads = tape.gradient(loss, [dirty] + layer.trainable_weights)
    np.testing.assert_allclose(out.numpy(), layer([image, mask])[0].numpy(), rtol=1e-6)
    for grad in grads:
        assert np.all(np.isfinite(grad.numpy()))


def test_all_missing_sample_gives_zero_output_and_mask(rng):
    layer = _random_layer(2, rng, kernel_size=3)
    image = np.full((2, 7, 6, 2), np.nan, "float32")
    mask = np.zeros((2, 7, 6, 1), "float32")
    mask[1, 3, 3] = 1.0
    image[1, 3, 3] = 1.0
    out, new_mask = layer([image, mask])
    np.testing.assert_array_equal(out.numpy()[0], 0.0)
    np.testing.assert_array_equal(new_mask.numpy()[0], 0.0)
    assert new_mask.numpy()[1].sum() == 9  # the 3x3 neighbourhood of (3, 3)
    assert np.all(np.isfinite(out.numpy()))


def test_mask_propagates_through_a_stack(rng):
    image = keras.Input((16, 16, 1))
    mask = keras.Input((16, 16, 1))
    x, m = WeightedConv2D(4, 3)([image, mask])
    x, m = WeightedConv2D(4, 3)([x, m])
    model = keras.Model([image, mask], m)
    sparse = np.zeros((1, 16, 16, 1), "float32")
    sparse[0, 8, 8] = 1.0
    propagated = model([np.ones_like(sparse), sparse]).numpy()[0, ..., 0]
    assert propagated.sum() == 25 and propagated[6:11, 6:11].all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(filters=0, kernel_size=3), "filters"),
        (dict(filters=4, kernel_size=3, padding="causal"), "padding"),
        (dict(filters=4, kernel_size=3, data_format="channels_first"), "channels_last"),
        (dict(filters=4, kernel_size=3, groups=2), "groups"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WeightedConv2D(**kwargs)


@pytest.mark.parametrize(
    "shapes, message",
    [
        ([(None, 8, 8, 3), (None, 8, 7, 3)], "differ on axis 2"),
        ([(None, 8, 8, 3), (None, 8, 8, 2)], "1 channel or the image's 3"),
        ([(None, 8, 3), (None, 8, 3)], "rank 4"),
        ([(None, 8, 8, 3)], r"\[image, mask\]"),
    ],
)
def test_bad_shapes_fail_at_build(shapes, message):
    with pytest.raises(ValueError, match=message):
        WeightedConv2D(4, 3).build(shapes)


def test_config_round_trip_and_output_shape():
    layer = WeightedConv3D(5, (3, 3, 1), strides=2, padding="valid", activation="relu")
    clone = WeightedConv3D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    shapes = clone.compute_output_shape([(None, 9, 9, 4, 2), (None, 9, 9, 4, 1)])
    assert shapes == [(None, 4, 4, 2, 5), (None, 4, 4, 2, 1)]
