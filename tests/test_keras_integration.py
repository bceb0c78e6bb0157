"""The layers inside ordinary Keras code: model kinds, saving, export, policies."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from sparselayers import LocallyConnectedSparse2D
from sparselayers import SparseDense
from sparselayers import WeightedConv2D


def _data(rng, batch=4):
    image = rng.random((batch, 8, 8, 1)).astype("float32")
    mask = (rng.random((batch, 8, 8, 1)) < 0.5).astype("float32")
    image[mask == 0] = np.nan
    return image, mask


def _functional_model():
    image = keras.Input((8, 8, 1), name="image")
    mask = keras.Input((8, 8, 1), name="mask")
    features, feature_mask = WeightedConv2D(4, 3, activation="relu")([image, mask])
    features, feature_mask = WeightedConv2D(4, 3, strides=2)([features, feature_mask])
    local = LocallyConnectedSparse2D(3, 2)([features, feature_mask])  # (2, 2, 3)
    code = SparseDense(5, name="code")([image, mask])
    merged = keras.layers.Concatenate()([keras.layers.Flatten()(local), code])
    output = keras.layers.Dense(2, name="output")(merged)
    return keras.Model([image, mask], output)


def test_functional_model_trains(rng):
    model = _functional_model()
    image, mask = _data(rng, 16)
    model.compile("adam", "mse")
    history = model.fit([image, mask], rng.random((16, 2)), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_sequential_model_chains_image_and_mask(rng):
    model = keras.Sequential(
        [WeightedConv2D(4, 3, activation="relu"), WeightedConv2D(2, 3), SparseDense(3)]
    )
    image, mask = _data(rng)
    out = model([image, mask])
    assert out.shape == (4, 3) and np.all(np.isfinite(out.numpy()))


def test_subclassed_model_and_tf_function(rng):
    class Encoder(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = WeightedConv2D(4, 3)
            self.dense = SparseDense(2)

        def call(self, inputs):
            features, feature_mask = self.conv(inputs)
            return self.dense([features, feature_mask])

    model = Encoder()
    image, mask = _data(rng)
    eager = model([image, mask]).numpy()
    compiled = tf.function(lambda x, m: model([x, m]))
    np.testing.assert_allclose(compiled(image, mask).numpy(), eager, rtol=1e-5, atol=1e-6)
    # Same shapes: no retracing.
    compiled(image, mask)
    assert compiled.experimental_get_tracing_count() == 1


def test_keras_file_round_trip(rng, tmp_path):
    model = _functional_model()
    image, mask = _data(rng)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored([image, mask]).numpy(), model([image, mask]).numpy())


@pytest.mark.process
def test_export_reloads_in_a_fresh_process(rng, tmp_path):
    model = _functional_model()
    image, mask = _data(rng)
    export_dir = str(tmp_path / "exported")
    model.export(export_dir, verbose=False)
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "mask.npy", mask)
    script = textwrap.dedent(
        f"""
        import json, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({export_dir!r})
        image = np.load({str(tmp_path / 'image.npy')!r})
        mask = np.load({str(tmp_path / 'mask.npy')!r})
        out = loaded.serve([tf.constant(image), tf.constant(mask)])
        signature = loaded.signatures["serving_default"]
        served = signature(image=tf.constant(image), mask=tf.constant(mask))
        print(json.dumps({{"serve": out.numpy().tolist(),
                          "signature": list(served.values())[0].numpy().tolist(),
                          "inputs": sorted(signature.structured_input_signature[1])}}))
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    want = model([image, mask]).numpy()
    np.testing.assert_allclose(payload["serve"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(payload["signature"], want, rtol=1e-5, atol=1e-6)
    assert payload["inputs"] == ["image", "mask"]


def test_mixed_float16_policy(rng):
    image, mask = _data(rng)
    reference = _functional_model()
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = _functional_model()
    model.set_weights(reference.get_weights())
    out = model([image, mask])
    code = model.get_layer("code")
    assert out.dtype == tf.float16
    assert code.kernel.dtype == "float32" and code.compute_dtype == "float16"
    np.testing.assert_allclose(
        out.numpy().astype("float32"), reference([image, mask]).numpy(), rtol=3e-2, atol=3e-2
    )
    model.compile("adam", "mse")
    history = model.fit([image, mask], rng.random((4, 2)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_float16_all_missing_sample_is_finite():
    keras.mixed_precision.set_global_policy("mixed_float16")
    layer = SparseDense(3, regularization=0.0)
    image = np.full((2, 10), np.nan, "float32")
    out = layer([image, np.zeros((2, 10), "float32")])
    assert out.dtype == tf.float16
    np.testing.assert_array_equal(out.numpy(), 0.0)


def test_mirrored_strategy_on_two_cpus(rng):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    # ReductionToOneDevice: collective all-reduce keys of several strategies in
    # one process can collide (a TF limitation); real jobs use one strategy.
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    image, mask = _data(rng, 16)
    target = rng.random((16, 2)).astype("float32")
    keras.utils.set_random_seed(0)
    single = _functional_model()
    initial = single.get_weights()
    with strategy.scope():
        mirrored = _functional_model()
        mirrored.set_weights(initial)
        mirrored.compile(keras.optimizers.SGD(0.1), "mse")
    single.compile(keras.optimizers.SGD(0.1), "mse")
    np.testing.assert_allclose(
        mirrored.predict([image, mask], verbose=0),
        single.predict([image, mask], verbose=0),
        rtol=1e-5, atol=1e-6,
    )
    lost_mirrored = mirrored.fit([image, mask], target, batch_size=8, epochs=2, shuffle=False, verbose=0)
    lost_single = single.fit([image, mask], target, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        lost_mirrored.history["loss"], lost_single.history["loss"], rtol=1e-4
    )
