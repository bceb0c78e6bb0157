"""Streaming imputation at scale: peak memory and throughput against the data size.

Imputes 10^4, 10^5 and 10^6 MNIST-size images (28 x 28, 75% missing) from a
repeated synthetic `tf.data` pipeline through the streaming path
(`sparselayers.distribute.streaming`: a dataset of batches in, a generator of per-batch
results out), with a small untrained sparse VAE (`conv-zero`, 8 filters, one
posterior sample per image) and with the compiled vector-field ascent of a
dense auto-encoder (784-64-784, 20 steps, mean initialisation from a
reference set). Untrained models: the cost, not the quality, is measured. Each size runs in a fresh process, so
the peak resident set it reports is its own. Flat memory is the goal: the
10^6 peak within 10% of the 10^4 peak.

Training throughput: a sparse VAE (conv-zero, 8 filters) trained on
synthetic MNIST-size images (global batch 64) by one process, then by two
local worker processes (`sparselayers.distribute.multi_worker`, TF_CONFIG on 127.0.0.1
ports), each for a first epoch (tracing, not timed) and a timed second epoch of
--train-steps steps. On a 2-core machine two workers cannot be faster: the
figure is their overhead.

Run: python benchmarks/scale.py [--sizes 10000 100000 1000000] [--batch 1000] [--train-steps 100]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def run_one(method, count, batch):
    """In this process: impute `count` images batch by batch; prints a JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    import imputers
    import sparselayers as sl

    rng = np.random.default_rng(0)
    images = rng.random((batch, 28, 28, 1)).astype("float32")
    masks = sl.masks.random_missing((batch, 28, 28), 0.75, seed=0)[..., None]
    sparse = np.where(masks > 0, images, np.nan).astype("float32")
    dataset = tf.data.Dataset.from_tensors((sparse, masks)).repeat(count // batch)
    if method == "sparse-vae":
        model = sl.build_variant("conv-zero", (28, 28, 1), 10, filters=8)
        results = model.impute(dataset, None, num_samples=1, batch_size=batch)
    else:
        import keras

        autoencoder = keras.Sequential([
            keras.Input((28, 28, 1)), keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(784, activation="sigmoid"), keras.layers.Reshape((28, 28, 1))])
        reference = rng.random((1000, 28, 28, 1)).astype("float32")
        results = imputers.vector_field_ascent(autoencoder, dataset, None, max_steps=20,
                                               init="mean", reference=reference)
    started = time.perf_counter()
    done = 0
    checksum = 0.0
    for imputed in results:  # the "sink": a running sum, nothing kept
        done += len(imputed)
        checksum += float(imputed[:, 0, 0, 0].sum())
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"method": method, "images": done, "seconds": seconds,
                      "peak_mib": peak_mib, "checksum": checksum}))


def train_worker(steps):
    """In this process (one worker, or one process alone): prints images/s of epoch 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    import sparselayers as sl
    from sparselayers.distribute import multi_worker

    strategy = (multi_worker.worker_strategy(120) if os.environ.get("TF_CONFIG")
                else tf.distribute.get_strategy())
    rng = np.random.default_rng(0)
    images = rng.random((64 * steps, 28, 28, 1)).astype("float32")
    masks = sl.masks.random_missing((64 * steps, 28, 28), 0.75, seed=0)[..., None]
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.where(masks > 0, images, np.nan).astype("float32"), masks)).batch(64).repeat()
    with strategy.scope():
        model = sl.build_variant("conv-zero", (28, 28, 1), 10, filters=8)
        model.compile(keras.optimizers.Adam(1e-3))
    epoch_seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.started)

    model.fit(dataset, epochs=2, steps_per_epoch=steps, verbose=0, shuffle=False,
              callbacks=[Timer()])
    print(json.dumps({"images_per_s": 64 * steps / epoch_seconds[1]}))


def training_throughput(steps):
    """(one process, two workers) images per second, the global batch counted once."""
    import socket

    def launch(index=None, ports=None):
        env = dict(os.environ)
        env.pop("TF_CONFIG", None)
        if ports:
            env["TF_CONFIG"] = json.dumps({
                "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                "task": {"type": "worker", "index": index}})
        return subprocess.Popen([sys.executable, __file__, "--train-worker", str(steps)],
                                env=env, stdout=subprocess.PIPE, text=True)

    def rate(process):
        output, _ = process.communicate(timeout=1200)
        return json.loads(output.strip().splitlines()[-1])["images_per_s"]

    alone = rate(launch())
    sockets = [socket.socket() for _ in range(2)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    workers = [launch(index, ports) for index in range(2)]
    return alone, [rate(process) for process in workers][0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="numbers of images")
    parser.add_argument("--batch", type=int, default=1000, help="images per batch")
    parser.add_argument("--methods", nargs="+", default=["sparse-vae", "ascent"],
                        choices=["sparse-vae", "ascent"], help="imputers to run")
    parser.add_argument("--train-steps", type=int, default=100,
                        help="timed training steps (0 skips the training comparison)")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--train-worker", type=int, metavar="STEPS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one[0], int(args.one[1]), args.batch)
        return
    if args.train_worker:
        train_worker(args.train_worker)
        return
    print(f"{'imputer':<11} {'images':>9} {'seconds':>8} {'images/s':>9} {'peak MiB':>9} "
          f"{'vs first':>8}")
    for method in args.methods:
        first = None
        for count in args.sizes:
            output = subprocess.run(
                [sys.executable, __file__, "--one", method, str(count), "--batch",
                 str(args.batch)], capture_output=True, text=True, check=True).stdout
            row = json.loads(output.strip().splitlines()[-1])
            first = first or row["peak_mib"]
            print(f"{method:<11} {row['images']:>9} {row['seconds']:>8.1f} "
                  f"{row['images'] / row['seconds']:>9.0f} {row['peak_mib']:>9.0f} "
                  f"{row['peak_mib'] / first - 1:>+8.1%}", flush=True)
    if args.train_steps:
        alone, pair = training_throughput(args.train_steps)
        print(f"\ntraining (conv-zero, global batch 64): one process {alone:.0f} images/s, "
              f"two local workers {pair:.0f} images/s -> {pair / alone:.2f}x")


if __name__ == "__main__":
    main()
