"""Speed of the imputers, each beside its baseline in the same run.

1. Vector-field ascent, compiled (one tf.function with a tf.while_loop) vs an
   eager Python loop doing the same steps, for a small conv auto-encoder on
   28x28 images, batch 256, 100 steps; and the compiled time per step vs one
   forward pass of the model (compiled).
2. Deep Image Prior: fitting 16 images in one compiled graph (batched=True,
   each image with its own weights) vs fitting them one by one.

Times are medians of --repeats runs after a warm-up (DIP: one timed run each).

    python benchmarks/speed_imputers.py [--repeats 5] [--dip-steps 200]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import imputers  # noqa: E402
from sparselayers import masks  # noqa: E402


def small_conv_autoencoder():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(x)
    outputs = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def small_generator():
    inputs = keras.Input((7, 7, 8))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.UpSampling2D(2)(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.UpSampling2D(2)(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def median_time(function, repeats):
    function()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def eager_ascent(model, x, observed, step_size, steps):
    """The baseline: the same update in a Python loop, eagerly."""
    x = tf.constant(x)
    for _ in range(steps):
        x = tf.where(observed, x, x + step_size * (model(x, training=False) - x))
    return x.numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--dip-steps", type=int, default=200)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    print(f"devices: {[d.device_type for d in tf.config.list_physical_devices()]}")

    model = small_conv_autoencoder()
    x = rng.random((256, 28, 28, 1)).astype(np.float32)
    mask = masks.missing_patch((256, 28, 28), 13, seed=0)[..., None]
    observed = tf.constant(mask > 0)
    filled = imputers.mean_fill(x, mask).numpy()
    settings = dict(step_size=0.1, max_steps=args.steps, init=filled)
    compiled = median_time(lambda: imputers.vector_field_ascent(model, x, mask, **settings),
                           args.repeats)
    eager = median_time(lambda: eager_ascent(model, filled, observed, 0.1, args.steps),
                        args.repeats)
    forward = tf.function(lambda batch: model(batch, training=False))
    one_pass = median_time(lambda: forward(tf.constant(filled)).numpy(), args.repeats * 4)
    xla = median_time(lambda: imputers.vector_field_ascent(model, x, mask, jit_compile=True,
                                                           **settings), args.repeats)
    np.testing.assert_allclose(imputers.vector_field_ascent(model, x, mask, **settings),
                               eager_ascent(model, filled, observed, 0.1, args.steps), atol=1e-4)
    print(f"ascent, batch 256, {args.steps} steps: compiled {compiled:.3f} s, XLA {xla:.3f} s, "
          f"eager loop {eager:.3f} s -> compiled is {eager / compiled:.1f}x faster "
          f"(target >= 5x)")
    per_step = compiled / args.steps
    print(f"time per step {1000 * per_step:.2f} ms vs one compiled forward pass "
          f"{1000 * one_pass:.2f} ms -> {per_step / one_pass:.2f}x (target <= 1.3x)")

    generator = small_generator()
    images = rng.random((16, 28, 28, 1)).astype(np.float32)
    dip_mask = masks.random_missing((16, 28, 28), 0.5, seed=1)[..., None]
    started = time.perf_counter()
    imputers.fit_dip(generator, images, dip_mask, steps=args.dip_steps, seed=0, batched=True,
                     verbose=0)
    batched = time.perf_counter() - started
    started = time.perf_counter()
    imputers.fit_dip(generator, images, dip_mask, steps=args.dip_steps, seed=0, batched=False,
                     verbose=0)
    one_by_one = time.perf_counter() - started
    print(f"DIP, 16 images x {args.dip_steps} steps: batched {batched:.1f} s, one by one "
          f"{one_by_one:.1f} s -> {one_by_one / batched:.1f}x throughput (target >= 4x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
