"""stack_networks against the networks themselves, run one by one by Keras."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from imputers import stacked_network
from imputers.stacked_network import stack_networks

COPIES = 3


def _image_generator():
    """Every stackable layer, a skip connection and a layer run copy by copy."""
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.UpSampling2D(2)(x)
    up = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same")(x)          # 16x16
    down = keras.layers.Conv2D(3, 3, strides=2, padding="valid", use_bias=False)(x)  # 3x3
    x = keras.layers.Add()([keras.layers.MaxPooling2D(5)(up), down])
    x = keras.layers.Dense(4, activation="tanh")(x)           # on (3, 3, 3): last axis
    x = keras.layers.LayerNormalization()(keras.layers.Flatten()(x))  # copy by copy
    x = keras.layers.Dense(64)(x)
    x = keras.layers.BatchNormalization(center=False)(keras.layers.Reshape((8, 8, 1))(x))
    return keras.Model(inputs, x)


def _signal_generator():
    return keras.Sequential([
        keras.Input((5, 2)),
        keras.layers.Conv1D(4, 3, padding="same", dilation_rate=2, activation="relu"),
        keras.layers.Conv1DTranspose(3, 2, strides=2, padding="valid"),
        keras.layers.BatchNormalization(),
        keras.layers.Conv1D(1, 3, padding="valid"),
    ])


def _nested_generator():
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(5), keras.layers.BatchNormalization()])
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(3)(inner(inputs)))


@keras.saving.register_keras_serializable(package="test_stacked_network")
class SubclassedGenerator(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(5, activation="relu")
        self.out = keras.layers.Dense(2)

    def call(self, inputs):
        return self.out(self.hidden(inputs))


def _subclassed_generator():
    model = SubclassedGenerator()
    model(np.zeros((1, 4), "float32"))
    return model


def _random_copies(network, rng):
    """COPIES clones of `network`, each with its own random weights."""
    copies = [keras.models.clone_model(network) for _ in range(COPIES)]
    for copy in copies:
        copy.set_weights([rng.normal(0.0, 0.5, w.shape).astype("float32")
                          for w in copy.get_weights()])
    return copies


def _input_shape(network):
    if isinstance(network, SubclassedGenerator):
        return (4,)
    return tuple(network.inputs[0].shape[1:])


GENERATORS = [_image_generator, _signal_generator, _nested_generator, _subclassed_generator]


@pytest.mark.parametrize("make_generator", GENERATORS)
def test_each_sample_goes_through_its_own_copy(rng, make_generator):
    copies = _random_copies(make_generator(), rng)
    stacked = stack_networks(copies)
    inputs = rng.normal(size=(COPIES,) + _input_shape(copies[0])).astype("float32")
    expected = np.concatenate([copy(inputs[g:g + 1], training=True).numpy()
                               for g, copy in enumerate(copies)])
    np.testing.assert_allclose(stacked(inputs, training=True).numpy(), expected,
                               rtol=1e-4, atol=1e-5)


def test_stackable_layers_are_vectorised(rng):
    stacked = stack_networks(_random_copies(_image_generator(), rng))
    kinds = {type(layer).__name__ for layer in stacked.layers}
    assert {"_StackedDense", "_StackedBatchNormalization"} <= kinds
    # Convolutions are grouped where the device can differentiate that.
    assert ("_StackedConvolution" in kinds) == stacked_network.grouped_convolution_supported()
    # LayerNormalization has no stacked version: it runs copy by copy.
    assert [type(layer).__name__ for layer in stacked.layers
            if "layer_normalization" in layer.name] == ["_PerCopy"]


def test_gradient_of_one_copy_is_that_network_alone(rng):
    """A loss on sample 0 moves copy 0 only, by the network's own gradient."""
    copies = _random_copies(_image_generator(), rng)
    stacked = stack_networks(copies)
    inputs = rng.normal(size=(COPIES, 4, 4, 2)).astype("float32")
    target = rng.normal(size=(8, 8, 1)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(stacked(inputs, training=True)[0] - target))
    gradients = dict(zip([id(v) for v in stacked.trainable_variables],
                         tape.gradient(loss, stacked.trainable_variables)))
    with tf.GradientTape() as tape:
        reference_loss = tf.reduce_sum(tf.square(copies[0](inputs[:1], training=True)[0] - target))
    reference = tape.gradient(reference_loss, copies[0].trainable_variables)
    np.testing.assert_allclose(float(loss), float(reference_loss), rtol=1e-5)
    reference = dict(zip([id(v) for v in copies[0].trainable_variables], reference))
    vectorised = 0
    for layer in stacked.layers:
        if isinstance(layer, stacked_network._StackedLayer):
            own = copies[0].get_layer(layer.name)
            for name in ("kernel", "bias", "gamma", "beta"):
                if getattr(layer, name, None) is None:
                    continue
                gradient = gradients[id(getattr(layer, name))].numpy()  # (COPIES, *shape)
                np.testing.assert_allclose(gradient[0], reference[id(getattr(own, name))],
                                           rtol=1e-4, atol=1e-5)
                np.testing.assert_array_equal(gradient[1:], 0.0)
                vectorised += 1
        elif layer.trainable_variables:  # copy by copy: the networks' own weights
            own = copies[0].get_layer(layer.name)
            for variable in own.trainable_variables:
                np.testing.assert_allclose(gradients[id(variable)], reference[id(variable)],
                                           rtol=1e-4, atol=1e-5)
    # 2 Dense (4 weights), 2 BatchNormalization (3), 3 convolutions (5) if grouped.
    assert vectorised == 7 + 5 * stacked_network.grouped_convolution_supported()
    normalization = [layer for layer in copies[1].layers
                     if isinstance(layer, keras.layers.LayerNormalization)]
    for variable in normalization[0].trainable_variables:  # copy 1's: untouched by sample 0
        assert gradients[id(variable)] is None or np.all(gradients[id(variable)] == 0.0)


def test_without_grouped_convolutions_convolutions_run_copy_by_copy(rng, monkeypatch):
    monkeypatch.setattr(stacked_network, "grouped_convolution_supported",
                        lambda dtype="float32": False)
    copies = _random_copies(_image_generator(), rng)
    stacked = stack_networks(copies)
    assert not any(type(layer).__name__ == "_StackedConvolution" for layer in stacked.layers)
    inputs = rng.normal(size=(COPIES, 4, 4, 2)).astype("float32")
    expected = np.concatenate([copy(inputs[g:g + 1], training=True).numpy()
                               for g, copy in enumerate(copies)])
    np.testing.assert_allclose(stacked(inputs, training=True).numpy(), expected,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_grouped_convolution_probe_matches_the_device(rng, dtype):
    """The probe says True exactly when a grouped convolution's gradient works here.

    Per dtype: x86 CPUs with AVX-512 BF16 but no FP16 differentiate float32
    and bfloat16 grouped convolutions, not float16 ones.
    """
    inputs = tf.constant(rng.normal(size=(1, 5, 5, 6)).astype("float32"), dtype)  # 3 groups
    kernel = tf.constant(rng.normal(size=(3, 3, 2, 3)).astype("float32"), dtype)
    try:
        with tf.GradientTape() as tape:
            tape.watch([inputs, kernel])
            loss = tf.reduce_sum(tf.nn.conv2d(inputs, kernel, 1, "SAME") ** 2)
        gradients = tape.gradient(loss, [inputs, kernel])
        works = True
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
            tf.errors.NotFoundError):
        works = False
    assert stacked_network.grouped_convolution_supported(dtype) == works
    if dtype != "float32":
        return  # the gradient's values are checked in float32 below
    if works:  # and it is the gradient of the three separate convolutions
        with tf.GradientTape() as tape:
            tape.watch([inputs, kernel])
            loss = tf.add_n([
                tf.reduce_sum(tf.nn.conv2d(inputs[..., 2 * g:2 * g + 2], kernel[..., g:g + 1],
                                           1, "SAME") ** 2)
                for g in range(3)
            ])
        expected = tape.gradient(loss, [inputs, kernel])
        for gradient, reference in zip(gradients, expected):
            np.testing.assert_allclose(gradient, reference, rtol=1e-4, atol=1e-4)


def test_stacked_weights_are_copies_and_other_layers_are_the_networks_own(rng):
    copies = _random_copies(_image_generator(), rng)
    before = [copy.get_weights() for copy in copies]
    stacked = stack_networks(copies)
    stacked_layers = [layer for layer in stacked.layers
                      if isinstance(layer, stacked_network._StackedLayer)]
    per_copy = [layer for layer in stacked.layers if isinstance(layer, stacked_network._PerCopy)]
    assert stacked_layers and per_copy
    for layer in stacked_layers:
        own = [copy.get_layer(layer.name) for copy in copies]
        for variable in layer.weights:
            name = variable.path.split("/")[-1]
            np.testing.assert_array_equal(variable.numpy(),
                                          np.stack([getattr(o, name).numpy() for o in own]))
            variable.assign(tf.zeros_like(variable))
    for copy, weights in zip(copies, before):  # stacked variables are new variables
        for old, new in zip(weights, copy.get_weights()):
            np.testing.assert_array_equal(old, new)
    for layer in per_copy:  # documented: these are the networks' own layers
        assert all(mine is copy.get_layer(layer.name)
                   for mine, copy in zip(layer.copy_layers, copies))


def test_mixed_precision(rng):
    """Under mixed_float16 the stacked model computes in float16 as the networks do."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        copies = _random_copies(_image_generator(), rng)
        stacked = stack_networks(copies)
        inputs = rng.normal(size=(COPIES, 4, 4, 2)).astype("float32")
        expected = np.concatenate([copy(inputs[g:g + 1], training=True).numpy()
                                   for g, copy in enumerate(copies)])
        outputs = stacked(inputs, training=True)
        with tf.GradientTape() as tape:  # a training step works too (fit_dip)
            loss = tf.reduce_sum(tf.cast(stacked(inputs, training=True), tf.float32) ** 2)
        gradients = tape.gradient(loss, stacked.trainable_variables)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert outputs.dtype == tf.float16 and expected.dtype == np.float16
    assert all(v.dtype == "float32" for v in stacked.trainable_variables)
    assert all(np.all(np.isfinite(g)) for g in gradients if g is not None)
    np.testing.assert_allclose(np.asarray(outputs, "float32"), expected.astype("float32"),
                               rtol=0.02, atol=0.02)


def test_bad_networks(rng):
    with pytest.raises(ValueError, match="at least one network"):
        stack_networks([])
    other = keras.Sequential([keras.Input((5, 2)), keras.layers.Conv1D(4, 3),
                              keras.layers.Conv1DTranspose(3, 2), keras.layers.BatchNormalization(),
                              keras.layers.Conv1D(2, 3)])
    with pytest.raises(ValueError, match=r"layer 'conv1d.*' differs"):
        stack_networks([_signal_generator(), other])
    with pytest.raises(ValueError, match="one architecture"):
        stack_networks([_signal_generator(), _nested_generator()])
