"""Several workers on this machine: local processes on 127.0.0.1 ports.

Each test starts `tests/multi_worker_job.py` processes with their own
TF_CONFIG, and every process runs under a hard time limit (SIGKILL), so a
hung worker fails the test instead of hanging the suite.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from sparselayers.distribute import multi_worker

JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multi_worker_job.py")
ROOT = os.path.dirname(os.path.dirname(JOB))
LIMIT_S = 150  # per worker process


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start(args, index=None, ports=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_CONFIG", None)
    if ports is not None:
        env["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index}})
    return subprocess.Popen([sys.executable, JOB, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process, limit=LIMIT_S):
    """(return code, output); the process is killed past `limit` seconds."""
    try:
        output, _ = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return None, output
    return process.returncode, output


def run_pair(args_per_worker):
    ports = free_ports(2)
    processes = [start(args, index, ports) for index, args in enumerate(args_per_worker)]
    return [finish(process) for process in processes]


def weights(path):
    with np.load(path) as archive:
        return {name: archive[name] for name in archive}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One process alone, and two workers, trained on the same global batches."""
    folder = tmp_path_factory.mktemp("multi_worker")
    single = start(["train", str(folder / "single.npz"), "--backup-dir", str(folder / "b1")])
    code, output = finish(single)
    assert code == 0, output[-3000:]
    results = run_pair([["train", str(folder / "pair{worker}.npz"), "--backup-dir",
                         str(folder / "b2")]] * 2)
    for code, output in results:
        assert code == 0, output[-3000:]
    return folder


def initial_weights():
    sys.path.insert(0, os.path.dirname(JOB))
    try:
        import multi_worker_job
    finally:
        sys.path.pop(0)
    return {f"{variant}/{number}": np.asarray(weight.numpy())
            for variant in multi_worker_job.VARIANTS
            for number, weight in enumerate(multi_worker_job.build(variant).weights)}


def test_two_workers_end_equal_to_each_other_and_to_one_process(trained):
    first, second = weights(trained / "pair0.npz"), weights(trained / "pair1.npz")
    single = weights(trained / "single.npz")
    start_weights = initial_weights()
    assert set(first) == set(single) == set(start_weights)
    moved = 0
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
        update, single_update = first[name] - start_weights[name], single[name] - start_weights[name]
        # Equal updates up to float rounding (the all-reduce adds in another order).
        np.testing.assert_allclose(update, single_update, rtol=1e-3, atol=2e-4, err_msg=name)
        moved += np.max(np.abs(single_update)) > 1e-2
    assert moved >= 10, "training barely moved the weights: the comparison would be vacuous"


@pytest.mark.process
def test_a_killed_worker_resumes_from_the_last_backup(trained, tmp_path):
    backup = str(tmp_path / "backup")
    out = str(tmp_path / "resumed{worker}.npz")
    # Worker 1 is killed (SIGKILL) when epoch 2 of 4 starts; worker 0 then
    # fails or is stopped by the time limit. Epochs 0-1 are backed up.
    ports = free_ports(2)
    killed = start(["train", out, "--backup-dir", backup, "--kill-at-epoch", "2"], 1, ports)
    survivor = start(["train", out, "--backup-dir", backup], 0, ports)
    code, output = finish(killed)
    assert code == -9, output[-3000:]
    survivor_started = time.monotonic()
    code, output = finish(survivor, limit=90)
    assert code != 0, output[-3000:]
    print(f"the survivor stopped {time.monotonic() - survivor_started:.0f} s after its peer died")
    assert not os.path.exists(out.format(worker=0))
    # Restarted, the pair runs only the two epochs left, then the linear model.
    results = run_pair([["train", out, "--backup-dir", backup]] * 2)
    for code, output in results:
        assert code == 0, output[-3000:]
        assert "conv-zero: 2 epochs run" in output and "linear: 4 epochs run" in output, output
        assert "conv-interp-residual: 4 epochs run" in output, output
    uninterrupted = weights(trained / "pair0.npz")
    for index in range(2):
        resumed = weights(out.format(worker=index))
        for name in uninterrupted:
            # Equal up to the posterior samples' noise (std 4.5e-5, drawn
            # afresh after the restart); an epoch more or less moves weights by ~1e-2.
            np.testing.assert_allclose(resumed[name], uninterrupted[name], rtol=1e-3, atol=1e-4,
                                       err_msg=name)


@pytest.mark.process
def test_a_worker_without_its_peer_fails_clearly_and_in_time(tmp_path):
    ports = free_ports(2)
    started = time.monotonic()
    lonely = start(["train", str(tmp_path / "w.npz"), "--backup-dir", str(tmp_path / "b"),
                    "--connect-timeout", "3"], 0, ports)
    code, output = finish(lonely, limit=60)
    assert code not in (0, None), output[-3000:]
    assert "PeerUnreachableError" in output, output[-3000:]
    assert f"could not reach 127.0.0.1:{ports[1]} within 3 s" in output, output[-3000:]
    assert time.monotonic() - started < 60


def test_distributed_imputation_equals_one_process(tmp_path):
    code, output = finish(start(["impute", str(tmp_path / "single.npz")]))
    assert code == 0, output[-3000:]
    for code, output in run_pair([["impute", str(tmp_path / "part{worker}.npz")]] * 2):
        assert code == 0, output[-3000:]
    single = np.load(tmp_path / "single.npz")
    parts = [np.load(tmp_path / f"part{index}.npz") for index in range(2)]
    assert list(parts[0]["indices"]) == [0, 2, 4] and list(parts[1]["indices"]) == [1, 3]
    assert list(single["indices"]) == [0, 1, 2, 3, 4]
    for part in parts:
        for index in part["indices"]:
            np.testing.assert_array_equal(part[str(index)], single[str(index)])
            assert np.isfinite(part[str(index)]).all()


@pytest.mark.parametrize("text, message", [
    ("{", "TF_CONFIG must be JSON"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
     r"task index 3 is not in 0..0"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}',
     "'a' is not 'host:port'"),
    ('{"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": 0}}',
     "only 'worker' tasks"),
    # Issue 21: these were accepted (1.5 and true as indices 1, an impossible
    # port, one address twice).
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1.5}}',
     r"task index must be an int; received 1\.5"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": true}}',
     "task index must be an int; received True"),
    ('{"cluster": {"worker": ["a:99999"]}, "task": {"type": "worker", "index": 0}}',
     r"port 99999 is not in 1\.\.65535"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}',
     r"\['a:1'\] appear more than once"),
])
def test_bad_tf_config_is_named(text, message):
    with pytest.raises(ValueError, match=message):
        multi_worker.cluster_from_tf_config(text)


def test_cluster_and_shards_from_tf_config(monkeypatch):
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert multi_worker.cluster_from_tf_config() == ([], 0)
    dataset = tf.data.Dataset.range(5)
    assert list(multi_worker.shard_for_worker(dataset).as_numpy_iterator()) == [0, 1, 2, 3, 4]
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 1}}))
    assert multi_worker.cluster_from_tf_config() == (["h:1", "h:2"], 1)
    assert list(multi_worker.shard_for_worker(dataset).as_numpy_iterator()) == [1, 3]
    callback = multi_worker.backup_and_restore("/tmp/backups")
    assert callback.backup_dir == os.path.join("/tmp/backups", "worker-1")


def test_worker_arguments_are_checked(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for timeout in ("10", float("nan"), 0, -1, True):
        with pytest.raises(ValueError, match="connect_timeout must be a finite number"):
            multi_worker.worker_strategy(connect_timeout=timeout)
    with pytest.raises(ValueError, match="shard_for_worker takes a tf.data.Dataset; received "
                                         "ndarray"):
        multi_worker.shard_for_worker(np.zeros(4))
    # Keras writes its backup in place: two copies, unless asked otherwise.
    assert multi_worker.backup_and_restore("/tmp/backups").double_checkpoint is True
    assert multi_worker.backup_and_restore("/tmp/b", double_checkpoint=False) \
        .double_checkpoint is False
