import numpy as np
import pytest
import tensorflow as tf

import references
from sparselayers import LocallyConnectedSparse2D, LocallyConnectedSparse3D


def _random_layer(layer, image_shape, mask_shape, rng):
    layer.build([(None,) + image_shape, (None,) + mask_shape])
    layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
    if layer.use_bias:
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    return layer


@pytest.mark.parametrize("mask_channels", [1, 2])
@pytest.mark.parametrize("block_size", [(2, 3), (4, 2)])
def test_2d_matches_per_block_numpy(rng, mask_channels, block_size):
    image = rng.normal(size=(3, 8, 6, 2)).astype("float32")
    mask = (rng.random((3, 8, 6, mask_channels)) < 0.6).astype("float32")
    layer = _random_layer(
        LocallyConnectedSparse2D(3, block_size, regularization=0.1),
        (8, 6, 2), (8, 6, mask_channels), rng,
    )
    got = layer([image, mask]).numpy()
    want = references.locally_connected_sparse(
        image, mask, layer.kernel.numpy(), layer.bias.numpy(), block_size, 0.1
    )
    assert got.shape == (3, 8 // block_size[0], 6 // block_size[1], 3)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)


def test_3d_matches_per_block_numpy(rng):
    image = rng.normal(size=(2, 4, 6, 4, 1)).astype("float32")
    mask = (rng.random((2, 4, 6, 4, 1)) < 0.5).astype("float32")
    mask[1, :2, :3, :2] = 0.0  # one all-missing block
    layer = _random_layer(
        LocallyConnectedSparse3D(2, (2, 3, 2), use_bias=False), (4, 6, 4, 1), (4, 6, 4, 1), rng
    )
    got = layer([image, mask]).numpy()
    want = references.locally_connected_sparse(
        image, mask, layer.kernel.numpy(), None, (2, 3, 2), 1e-3
    )
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)
    np.testing.assert_array_equal(got[1, 0, 0, 0], 0.0)


def test_decode_places_each_block(rng):
    layer = _random_layer(LocallyConnectedSparse2D(2, (2, 3)), (4, 6, 1), (4, 6, 1), rng)
    response = rng.normal(size=(1, 2, 2, 2)).astype("float32")
    decoded = layer.decode(response).numpy()
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    for block, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        want = kernel[block] @ response[0, i, j] + bias[block]
        np.testing.assert_allclose(
            decoded[0, 2 * i:2 * i + 2, 3 * j:3 * j + 3, 0].reshape(-1), want, rtol=1e-5
        )


def test_nan_at_missing_entries_and_finite_gradients(rng):
    image = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    mask = (rng.random((2, 4, 4, 1)) < 0.5).astype("float32")
    dirty = tf.constant(np.where(mask > 0, image, np.nan).astype("float32"))
    layer = _random_layer(LocallyConnectedSparse2D(3, 2, regularization=0.0), (4, 4, 1), (4, 4, 1), rng)
    with tf.GradientTape() as tape:
        tape.watch(dirty)
        loss = tf.reduce_sum(layer([dirty, mask]) ** 2)
    for grad in tape.gradient(loss, [dirty] + layer.trainable_weights):
        assert np.all(np.isfinite(grad.numpy()))


def test_64_cubed_volume_runs_forward_and_backward(rng):
    """The size named in the spec (timing and memory are in benchmarks/)."""
    image = rng.random((2, 64, 64, 64, 1)).astype("float32")
    mask = (rng.random((2, 64, 64, 64, 1)) < 0.2).astype("float32")
    layer = LocallyConnectedSparse3D(32, 16)
    with tf.GradientTape() as tape:
        out = layer([image, mask])
        loss = tf.reduce_sum(out**2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert out.shape == (2, 4, 4, 4, 32)
    assert layer.kernel.shape == (64, 4096, 32)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_size_not_multiple_of_block_fails_at_build():
    with pytest.raises(ValueError, match=r"spatial size \(10, 8\) is not a multiple of block_size \(4, 4\)"):
        LocallyConnectedSparse2D(3, 4).build([(None, 10, 8, 1), (None, 10, 8, 1)])


@pytest.mark.parametrize("block_size", [0, (2, -1), (2, 2, 2)])
def test_bad_block_size(block_size):
    with pytest.raises(ValueError, match="block_size"):
        LocallyConnectedSparse2D(3, block_size)


def test_wrong_rank():
    with pytest.raises(ValueError, match="expects images of shape"):
        LocallyConnectedSparse3D(3, 2).build([(None, 4, 4, 1), (None, 4, 4, 1)])


def test_config_round_trip():
    layer = LocallyConnectedSparse3D(4, (2, 4, 8), regularization=0.2, activation="relu")
    clone = LocallyConnectedSparse3D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.compute_output_shape([(None, 8, 8, 8, 1), (None, 8, 8, 8, 1)]) == (
        None, 4, 2, 1, 4,
    )
