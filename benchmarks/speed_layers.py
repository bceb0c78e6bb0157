"""Speed and memory of the layers, each beside its baseline in the same run.

1. SparseDense vs a naive implementation that materialises the masked kernel
   (batch, D, units) and inverts with tf.linalg.inv (the original research
   code's approach): D=4096, units=100, batch=64, forward + backward.
2. WeightedConv2D vs keras Conv2D: (32, 64, 64, 32) -> 32 filters, 3x3, 'same',
   forward + backward.
3. LocallyConnectedSparse3D on a 64^3 single-channel volume, 16^3 blocks,
   32 units, batch 2, forward + backward.

Every case runs in its own subprocess so that its peak memory can be read:
on CPU the growth of the process' peak resident set size (ru_maxrss) over the
setup, on GPU TensorFlow's peak allocator figure. Times are medians over
repeated compiled (tf.function) steps after a warm-up.

    python benchmarks/speed_layers.py [--repeats 10]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _case(name):
    """Returns (step function, its arguments) for one named case."""
    import keras
    import numpy as np
    import tensorflow as tf

    from sparselayers import LocallyConnectedSparse3D
    from sparselayers import SparseDense
    from sparselayers import WeightedConv2D

    rng = np.random.default_rng(0)
    if name in ("sparse_dense", "naive_dense"):
        batch, dim, units = 64, 4096, 100
        image = tf.constant(rng.random((batch, dim), dtype=np.float32))
        mask = tf.constant((rng.random((batch, dim)) < 0.5).astype(np.float32))
        if name == "sparse_dense":
            layer = SparseDense(units)
            layer.build([(None, dim), (None, dim)])
            variables = [layer.kernel, layer.bias]

            def forward(image, mask):
                return layer([image, mask])
        else:
            kernel = tf.Variable(rng.normal(size=(dim, units)).astype(np.float32) / 64)
            bias = tf.Variable(np.zeros(dim, np.float32))
            variables = [kernel, bias]

            def forward(image, mask):
                masked_kernel = mask[:, :, None] * kernel[None]  # (batch, D, units)
                gram = tf.matmul(masked_kernel, masked_kernel, transpose_a=True)
                inverse = tf.linalg.inv(gram + 1e-3 * tf.eye(units))
                rhs = tf.einsum("bdu,bd->bu", masked_kernel, mask * (image - bias))
                return tf.einsum("buv,bv->bu", inverse, rhs)
        inputs = (image, mask)
    elif name in ("weighted_conv2d", "conv2d"):
        image = tf.constant(rng.random((32, 64, 64, 32), dtype=np.float32))
        mask = tf.constant((rng.random((32, 64, 64, 1)) < 0.5).astype(np.float32))
        if name == "weighted_conv2d":
            layer = WeightedConv2D(32, 3)
            layer.build([image.shape, mask.shape])

            def forward(image, mask):
                return layer([image, mask])[0]
        else:
            layer = keras.layers.Conv2D(32, 3, padding="same")
            layer.build(image.shape)

            def forward(image, mask):
                return layer(image)
        variables = list(layer.trainable_weights)
        inputs = (image, mask)
    elif name == "locally_connected_3d":
        image = tf.constant(rng.random((2, 64, 64, 64, 1), dtype=np.float32))
        mask = tf.constant((rng.random((2, 64, 64, 64, 1)) < 0.2).astype(np.float32))
        layer = LocallyConnectedSparse3D(32, 16)
        layer.build([image.shape, mask.shape])
        variables = list(layer.trainable_weights)

        def forward(image, mask):
            return layer([image, mask])
        inputs = (image, mask)
    else:
        raise ValueError(f"unknown case {name}")

    @tf.function
    def step(image, mask):
        with tf.GradientTape() as tape:
            tape.watch(image)
            loss = tf.reduce_sum(tf.square(forward(image, mask)))
        return loss, tape.gradient(loss, variables + [image])

    return step, inputs


def run_case(name, repeats):
    import tensorflow as tf

    step, inputs = _case(name)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    before = _peak_rss_mib()
    started = time.perf_counter()
    result = step(*inputs)  # trace + first run
    tf.nest.map_structure(lambda t: t.numpy(), result)
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = step(*inputs)
        tf.nest.map_structure(lambda t: t.numpy(), result)
        times.append(time.perf_counter() - started)
    if gpu:
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    else:
        peak = _peak_rss_mib() - before
    times.sort()
    return {"case": name, "median_s": times[len(times) // 2], "first_call_s": first,
            "peak_mib": peak, "memory": "GPU peak" if gpu else "RSS growth", "gpu": gpu}


def measure(name, repeats):
    output = subprocess.run(
        [sys.executable, __file__, "--case", name, "--repeats", str(repeats)],
        capture_output=True, text=True, check=False,
    )
    if output.returncode != 0:
        raise RuntimeError(f"case {name} failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.repeats)))
        return 0

    results = {}
    for name in ("sparse_dense", "naive_dense", "weighted_conv2d", "conv2d",
                 "locally_connected_3d"):
        results[name] = measure(name, args.repeats)
        r = results[name]
        print(f"{name:>22}: {1000 * r['median_s']:8.1f} ms/step  "
              f"peak {r['peak_mib']:8.1f} MiB ({r['memory']})  first call {r['first_call_s']:.1f} s")
    dense, naive = results["sparse_dense"], results["naive_dense"]
    conv, plain = results["weighted_conv2d"], results["conv2d"]
    print(f"SparseDense vs naive (batch, D, units) + inv: {naive['median_s'] / dense['median_s']:.1f}x "
          f"faster (target >= 5x), peak memory {dense['peak_mib']:.0f} vs {naive['peak_mib']:.0f} MiB")
    print(f"WeightedConv2D / Conv2D time: {conv['median_s'] / plain['median_s']:.2f}x (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
