"""Speed of the imputers, each beside its baseline in the same run.

1. Vector-field ascent, compiled (one tf.function with a tf.while_loop) vs an
   eager Python loop doing the same steps, for a small conv auto-encoder on
   28x28 images, batch 256, 100 steps; and the compiled time per step vs one
   forward pass of the model (compiled).
2. Deep Image Prior: fitting 16 images as one stacked model (batched=True:
   each image has its own weights, every layer processes all 16 at once; see
   `imputers.stacked_network`) vs fitting them one by one.

Times are medians of --repeats runs after a warm-up. Each DIP fit is timed
once with 10 steps and once with 10 + --dip-steps steps, which separates its
set-up (cloning, tracing) from its cost per step.

Each target is printed beside its ceiling on the device at hand: no loop can
take a step in less than one forward pass, and per step no batched DIP can beat
one shared network fitted to the 16 images as one batch (the same arithmetic).

    python benchmarks/speed_imputers.py [--repeats 5] [--dip-steps 200]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

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


SHORT_FIT = 10  # steps of the short DIP run that measures set-up time


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def median_time(function, repeats):
    function()  # warm-up (tracing)
    return float(np.median([timed(function) for _ in range(repeats)]))


def eager_ascent(model, x, observed, step_size, steps):
    """The baseline: the same update in a Python loop, eagerly."""
    x = tf.constant(x)
    for _ in range(steps):
        x = tf.where(observed, x, x + step_size * (model(x, training=False) - x))
    return x.numpy()


def shared_network_fit(generator, images, mask, steps):
    """The arithmetic floor of any batched DIP: ONE network fitted to all images as one batch.

    Same convolutions per step as fitting each image with its own network (the
    per-image weight updates are tiny), but no per-network ops at all; no
    batching scheme of separate networks can be faster than this.
    """
    network = keras.models.clone_model(generator)
    optimizer = keras.optimizers.Adam(0.01)
    inputs = tf.random.normal((len(images),) + tuple(generator.input_shape[1:]), stddev=0.1)
    target = tf.constant(images)
    observed = tf.constant(mask > 0)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            output = network(inputs, training=True)
            loss = tf.reduce_sum(tf.where(observed, tf.square(output - target), 0.0))
        gradients = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(gradients, network.trainable_variables))
        return loss

    for _ in range(steps):
        loss = train_step()
    return float(loss)


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
    # No implementation of the ascent can do a step in less than one forward pass.
    print(f"ceiling for any compiled loop on this device: eager loop / ({args.steps} forward "
          f"passes) = {eager / (args.steps * one_pass):.1f}x")

    generator = small_generator()
    images = rng.random((16, 28, 28, 1)).astype(np.float32)
    dip_mask = masks.random_missing((16, 28, 28), 0.5, seed=1)[..., None]
    fits = {
        "batched": lambda steps: imputers.fit_dip(generator, images, dip_mask, steps=steps,
                                                  seed=0, batched=True, verbose=0),
        "one by one": lambda steps: imputers.fit_dip(generator, images, dip_mask, steps=steps,
                                                     seed=0, batched=False, verbose=0),
        # The arithmetic floor: ONE network on the 16 images as a batch.
        "shared network": lambda steps: shared_network_fit(generator, images, dip_mask, steps),
    }
    totals, per_step = {}, {}
    for name, fit in fits.items():
        # Set-up (cloning, tracing) and per-step cost, from a short and a full run.
        short = timed(lambda: fit(SHORT_FIT))
        totals[name] = timed(lambda: fit(SHORT_FIT + args.dip_steps))
        per_step[name] = (totals[name] - short) / args.dip_steps
        setup = totals[name] - (SHORT_FIT + args.dip_steps) * per_step[name]
        print(f"DIP {name:>14}: {totals[name]:5.1f} s for 16 images x "
              f"{SHORT_FIT + args.dip_steps} steps = set-up {setup:4.1f} s + "
              f"{1000 * per_step[name]:5.1f} ms per step of all 16 images")
    print(f"batched DIP throughput vs one by one: {totals['one by one'] / totals['batched']:.1f}x "
          f"in total (target >= 4x), {per_step['one by one'] / per_step['batched']:.1f}x per step")
    print(f"ceiling per step on this device (one by one / shared network): "
          f"{per_step['one by one'] / per_step['shared network']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
