"""Training and imputing on several workers with `tf.distribute` and `tf.data`.

Each worker is one process, started with the same command and its own
``TF_CONFIG`` (the cluster's ``host:port`` list and its own index), as
TensorFlow's `tf.distribute.MultiWorkerMirroredStrategy` expects. This module
adds only what that strategy leaves to its user:

* `worker_strategy` checks that every peer is reachable before building the
  strategy, and fails with a clear message after `connect_timeout` seconds
  (the strategy itself waits for a missing peer forever, inside C++ code that
  no Python timer can interrupt);
* `backup_and_restore` gives each worker its own backup folder: Keras'
  `BackupAndRestore` is not multi-worker aware, and two workers writing the
  same file would corrupt it;
* `shard_for_worker` takes a worker's share of a dataset for distributed
  imputation, each worker writing its own part;
* `prepare_model` works around a Keras 3.15 defect that stops `fit` on
  several workers for any model logging scalars (tensorflow/tensorflow#72388);
  `SparseVAE` and every variant built on it need no preparation.

Example, run by every worker with its own TF_CONFIG::

    strategy = multi_worker.worker_strategy(connect_timeout=120)
    with strategy.scope():
        model = sparselayers.build_variant("conv-sparse", (28, 28, 1))
        model.compile(keras.optimizers.Adam(1e-3))
    # Global batches: each worker takes its share of each one.
    model.fit(dataset, epochs=10,
              callbacks=[multi_worker.backup_and_restore("/shared/backup")])
"""

import json
import math
import os
import socket
import threading
import time

import keras
import tensorflow as tf

__all__ = [
    "PeerUnreachableError",
    "cluster_from_tf_config",
    "worker_strategy",
    "backup_and_restore",
    "shard_for_worker",
    "prepare_model",
]


class PeerUnreachableError(ConnectionError):
    """A worker listed in TF_CONFIG could not be reached in time."""


def cluster_from_tf_config(tf_config=None):
    """(worker addresses, this worker's index) from ``TF_CONFIG``.

    Args:
        tf_config: the JSON text; None reads ``$TF_CONFIG``. No TF_CONFIG means
            one worker: ``([], 0)``.

    Returns:
        (list of "host:port" strings, int index into it).

    Raises:
        ValueError: naming what is wrong in TF_CONFIG.
    """
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text.strip():
        return [], 0
    try:
        config = json.loads(text)
        workers = list(config["cluster"]["worker"])
        task = config["task"]
        index = task["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"TF_CONFIG must be JSON like {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, "
            f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}}; got {text!r} "
            f"({type(error).__name__}: {error}).") from None
    if task.get("type", "worker") != "worker" or set(config["cluster"]) - {"worker"}:
        raise ValueError(f"TF_CONFIG: only 'worker' tasks are supported; got {text!r}.")
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"TF_CONFIG: task index must be an int; received {index!r}.")
    if not 0 <= index < len(workers):
        raise ValueError(f"TF_CONFIG: task index {index} is not in 0..{len(workers) - 1} "
                         f"for the {len(workers)} workers {workers}.")
    for address in workers:
        host, _, port = str(address).rpartition(":") if isinstance(address, str) else ("", "", "")
        if not host or not port.isdigit():
            raise ValueError(f"TF_CONFIG: worker address {address!r} is not 'host:port'.")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"TF_CONFIG: worker address {address!r}: port {port} is not in "
                             "1..65535.")
    repeated = sorted({address for address in workers if workers.count(address) > 1})
    if repeated:
        raise ValueError(f"TF_CONFIG: worker address(es) {repeated} appear more than once; each "
                         "worker needs its own host:port.")
    return workers, index


def worker_strategy(connect_timeout=60.0, communication_options=None):
    """`tf.distribute.MultiWorkerMirroredStrategy` for this worker, once its peers answer.

    Every worker listens on its own port (a plain socket, closed before
    TensorFlow's server takes the port) and connects to every other worker's
    port, retrying until `connect_timeout`; only then is the strategy built.

    Args:
        connect_timeout: seconds to wait for every peer, a finite number > 0.
        communication_options: passed to the strategy.

    Returns:
        The strategy (one worker without TF_CONFIG: a strategy of one).

    Raises:
        PeerUnreachableError: a peer did not answer in time; the message
            names it.
        ValueError: a malformed TF_CONFIG.
    """
    if (isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float))
            or not math.isfinite(connect_timeout) or connect_timeout <= 0):
        raise ValueError(f"connect_timeout must be a finite number of seconds > 0; received "
                         f"{connect_timeout!r}.")
    workers, index = cluster_from_tf_config()
    if len(workers) > 1:
        _wait_for_peers(workers, index, connect_timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=communication_options)


def _wait_for_peers(workers, index, timeout):
    own_port = int(workers[index].rpartition(":")[2])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", own_port))
    except OSError as error:
        listener.close()
        raise PeerUnreachableError(
            f"worker {index} cannot listen on port {own_port} ({workers[index]} in TF_CONFIG): "
            f"{error}. Is another process using it?") from None
    listener.listen()
    stop = threading.Event()

    def answer():  # accept and close: a peer only needs the connection to succeed
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:
                continue

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    waiting = [address for i, address in enumerate(workers) if i != index]
    try:
        while waiting:
            host, _, port = waiting[0].rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=1.0).close()
                waiting.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    raise PeerUnreachableError(
                        f"worker {index} ({workers[index]}) could not reach "
                        f"{', '.join(waiting)} within {timeout:g} s. Start every worker listed "
                        f"in TF_CONFIG's cluster, each with its own task index, and check the "
                        f"host names, ports and firewalls.") from None
                time.sleep(0.2)
        # Peers still waiting for us need our port open a little longer.
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
        listener.close()


def backup_and_restore(backup_dir, save_freq="epoch", **kwargs):
    """`keras.callbacks.BackupAndRestore` writing to this worker's own subfolder.

    Args:
        backup_dir: folder for the backups of every worker (``worker-<index>``
            subfolders are created in it).
        save_freq, kwargs: as `keras.callbacks.BackupAndRestore`.

    Returns:
        The callback, with ``double_checkpoint=True`` unless told otherwise:
        Keras writes the backup in place, so a kill during the write would
        corrupt the only copy; with two, it resumes from the previous one.
        Weights are equal on every worker after each step, so a restarted
        worker resumes from its own last backup.
    """
    kwargs.setdefault("double_checkpoint", True)
    _, index = cluster_from_tf_config()
    return keras.callbacks.BackupAndRestore(
        os.path.join(backup_dir, f"worker-{index}"), save_freq=save_freq, **kwargs)


def shard_for_worker(dataset):
    """This worker's share of `dataset`: every n-th element from its index on.

    For distributed imputation: shard the dataset of (image, mask) batches
    (`tf.data.Dataset.shard`), impute it with a streaming entry point, write
    this worker's part; the parts, interleaved by element, are the whole.
    Without TF_CONFIG the dataset is returned as it is.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"shard_for_worker takes a tf.data.Dataset; received "
                         f"{type(dataset).__name__} (wrap arrays with "
                         "tf.data.Dataset.from_tensor_slices).")
    workers, index = cluster_from_tf_config()
    if len(workers) <= 1:
        return dataset
    return dataset.shard(len(workers), index)


def several_workers(strategy=None):
    """Whether `strategy` (default: the current one) spans more than one worker."""
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec()
    return sum(cluster.num_tasks(job) for job in cluster.jobs) > 1


def logs_for_workers(logs):
    """A train or test step's logs, made fit for Keras' averaging over workers.

    Keras (3.15) averages each logged value over the workers along its axis 0
    (``strategy.reduce("MEAN", value, axis=0)``), which a scalar does not have:
    `fit` fails (tensorflow/tensorflow#72388). On several workers, scalars are
    logged with shape (1,) and averaged back to scalars; otherwise the logs
    are returned as they are.
    """
    if not several_workers():
        return logs
    logs = {name: tf.convert_to_tensor(value) for name, value in logs.items()}
    return {name: tf.reshape(value, [1]) if value.shape.rank == 0 else value
            for name, value in logs.items()}


def prepare_model(model):
    """Lets `model.fit` and `evaluate` run on several workers (see `logs_for_workers`).

    Wraps the model's own `train_step` and `test_step`; call it once, inside
    or outside the strategy's scope, before `fit`. A `SparseVAE` needs no
    preparation. Returns the model.

    Example:
        >>> with strategy.scope():
        ...     model = sparselayers.build_variant("conv-interp-residual", (None, None, 1))
        ...     model.compile(keras.optimizers.Adam(1e-3), loss="mse")
        >>> multi_worker.prepare_model(model).fit(dataset, callbacks=[backup_and_restore(path)])
    """
    if getattr(model, "_logs_for_workers", False):
        return model
    train_step, test_step = model.train_step, model.test_step
    symbolic_build = model._maybe_symbolic_build
    # Instance attributes: Keras compiles whatever model.train_step is.
    model.train_step = lambda data: logs_for_workers(train_step(data))
    model.test_step = lambda data: logs_for_workers(test_step(data))

    def build_from_local_batch(iterator=None, data_batch=None):
        # Keras takes a first batch to learn the data's shapes and averages
        # its (image, mask) tuple over workers with strategy.reduce(), which
        # MultiWorkerMirroredStrategy cannot do for a tuple. This worker's
        # own share has the same shapes.
        if iterator is not None and several_workers(model.distribute_strategy):
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(_local_value, next(batches))
                break
            iterator = None
        symbolic_build(iterator=iterator, data_batch=data_batch)

    model._maybe_symbolic_build = build_from_local_batch
    model._logs_for_workers = True
    return model


def _local_value(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value
