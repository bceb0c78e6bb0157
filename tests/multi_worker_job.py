"""One worker of the multi-worker tests (tests/test_multi_worker.py).

Run as a process, with ``TF_CONFIG`` for a worker of a cluster or without it
for one process alone:

    python tests/multi_worker_job.py train OUT.npz --backup-dir DIR [--kill-at-epoch N]
    python tests/multi_worker_job.py impute OUT.npz

"{worker}" in OUT is replaced by the worker's index.

``train`` fits two small sparse VAEs (conv-zero, then the linear subspace
model) and the thick-slice MRI model (conv-interp-residual, trained on complete
targets) on fixed synthetic data, one global batch of 16 per step in a fixed order,
and saves the final weights. The posterior's log-variance starts at -20
(standard deviation 4.5e-5), so that the Monte Carlo noise of the loss, which
two workers draw differently from one process, is far below the tests'
tolerance. ``--kill-at-epoch N``: this worker kills itself (SIGKILL, no
clean-up) at the start of epoch N, once N epochs are backed up.

``impute`` runs vector-field ascent on this worker's shard of a dataset of
(image, mask) batches and saves its part with the batches' indices.
"""

import argparse
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def synthetic_data(count=64, seed=0, with_truth=False):
    rng = np.random.default_rng(seed)
    images = rng.random((count, 8, 8, 1)).astype("float32")
    mask = (rng.random((count, 8, 8, 1)) < 0.6).astype("float32")
    sparse = np.where(mask > 0, images, np.nan).astype("float32")
    return (sparse, mask, images) if with_truth else (sparse, mask)


VARIANTS = ("conv-zero", "linear", "conv-interp-residual")


def build(variant):
    import keras

    import sparselayers

    from sparselayers.distribute import multi_worker

    keras.utils.set_random_seed(0)
    if variant == "conv-interp-residual":  # the thick-slice MRI model, a plain Keras model
        model = sparselayers.build_variant(variant, (8, 8, 1), filters=4, dilations=(1, 2))
        model.compile(keras.optimizers.SGD(0.01), loss="mse")
        return multi_worker.prepare_model(model)
    model = sparselayers.build_variant(variant, (8, 8, 1), 3, filters=4, levels=1,
                                       noise_sigma=1.0)
    for weight in model.weights:
        if weight.path.endswith("log_variance/kernel"):
            weight.assign(np.zeros(weight.shape, "float32"))
        elif weight.path.endswith("log_variance/bias") or weight.path.endswith(
                "learned_log_variance/log_variance"):
            weight.assign(np.full(weight.shape, -20.0, "float32"))
    model.compile(keras.optimizers.SGD(0.01))
    return model


class KillAtEpoch:
    """A Keras callback factory: SIGKILL this process at the start of an epoch."""

    @staticmethod
    def make(epoch):
        import keras

        class Kill(keras.callbacks.Callback):
            def on_epoch_begin(self, current, logs=None):
                if current == epoch:
                    os.kill(os.getpid(), signal.SIGKILL)

        return Kill()


def train(args):
    import tensorflow as tf

    from sparselayers.distribute import multi_worker

    strategy = (multi_worker.worker_strategy(connect_timeout=args.connect_timeout)
                if os.environ.get("TF_CONFIG") else tf.distribute.get_strategy())
    image, mask, truth = synthetic_data(with_truth=True)
    results = {}
    for variant in VARIANTS:
        with strategy.scope():
            model = build(variant)
        data = ((image, mask), truth) if variant == "conv-interp-residual" else (image, mask)
        dataset = tf.data.Dataset.from_tensor_slices(data).batch(16)
        callbacks = [multi_worker.backup_and_restore(os.path.join(args.backup_dir, variant))]
        if args.kill_at_epoch is not None and variant == "conv-zero":
            callbacks.append(KillAtEpoch.make(args.kill_at_epoch))
        history = model.fit(dataset, epochs=args.epochs, verbose=0, shuffle=False,
                            callbacks=callbacks)
        print(f"{variant}: {len(history.history.get('loss', []))} epochs run", flush=True)
        for number, weight in enumerate(model.weights):
            results[f"{variant}/{number}"] = np.asarray(weight.numpy())
    np.savez(output_path(args.out), **results)


def impute(args):
    import keras
    import tensorflow as tf

    import imputers
    from sparselayers.distribute import multi_worker

    keras.utils.set_random_seed(0)
    autoencoder = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                    keras.layers.Dense(6, activation="tanh"),
                                    keras.layers.Dense(64), keras.layers.Reshape((8, 8, 1))])
    image, mask = synthetic_data(40, seed=1)
    batches = tf.data.Dataset.from_tensor_slices((image, mask)).batch(8)  # 5 batches
    numbered = tf.data.Dataset.zip(tf.data.Dataset.range(5), batches)
    shard = multi_worker.shard_for_worker(numbered)
    indices = [int(index) for index, _ in shard]
    imputed = imputers.vector_field_ascent(
        autoencoder, shard.map(lambda index, batch: batch), None, max_steps=20, step_size=0.1,
        init="mean", reference=np.nan_to_num(image))
    np.savez(output_path(args.out), indices=np.array(indices), **{str(i): part for i, part
                                                     in zip(indices, imputed)})


def output_path(template):
    """The output path, "{worker}" replaced by this worker's index (0 alone)."""
    from sparselayers.distribute import multi_worker

    return template.format(worker=multi_worker.cluster_from_tf_config()[1])


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "impute"])
    parser.add_argument("out")
    parser.add_argument("--backup-dir")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--kill-at-epoch", type=int)
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    train(args) if args.mode == "train" else impute(args)


if __name__ == "__main__":
    main()
