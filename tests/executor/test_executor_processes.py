"""Executor tests that need their own processes: 2 logical CPU replicas, two workers on
localhost, and training killed by SIGKILL / SIGTERM.

Each subprocess runs tests/executor/executor_script.py; a TensorFlow start costs ~5 s.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import executor_fakes as fakes
import numpy as np
import pytest
import tensorflow as tf

from detection.executor import checkpoints
from detection.executor import config as config_lib
from detection.executor import trainer as trainer_lib

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))
_SCRIPT = os.path.join(_HERE, "executor_script.py")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO, env.get("PYTHONPATH")) if p)
    return env


def _start(args, log_dir, name, **env):
    out = open(os.path.join(log_dir, f"{name}.out"), "w")
    err = open(os.path.join(log_dir, f"{name}.err"), "w")
    return subprocess.Popen(
        [sys.executable, _SCRIPT, *map(str, args)],
        stdout=out,
        stderr=err,
        cwd=_REPO,
        env=_env(**env),
    )


def _read(log_dir, name, stream="out"):
    with open(os.path.join(log_dir, f"{name}.{stream}")) as f:
        return f.read()


def _wait_for(condition, process, what, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before {what}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"timed out waiting for {what}")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_mirrored_two_cpus_matches_one_device(tmp_path):
    out = tmp_path / "result.json"
    process = _start(["mirrored_vs_one_device", out], tmp_path, "mirrored")
    assert process.wait(timeout=120) == 0, _read(tmp_path, "mirrored", "err")[-3000:]
    result = json.loads(out.read_text())
    assert result["num_replicas"] == 2
    assert result["loss_mirrored"] == pytest.approx(result["loss_one_device"], abs=1e-5)
    assert max(result["max_weight_diff"].values()) < 1e-5, result["max_weight_diff"]
    assert result["eval_ids_mirrored"] == result["eval_ids_one_device"] == [0, 1, 2, 3, 4]
    # Batch-norm moving statistics: one value across replicas, not one per replica.
    assert result["replica_copy_diff"] and max(result["replica_copy_diff"].values()) == 0.0
    assert result["accuracy_mirrored"] == result["accuracy_one_device"]
    assert result["eval_loss_mirrored"] == pytest.approx(result["eval_loss_one_device"], abs=1e-5)


def test_two_workers_train_together(tmp_path):
    model_dir = tmp_path / "run"
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    processes = [
        _start(
            ["multi_worker", model_dir, tmp_path / f"weights{i}.npz"],
            tmp_path,
            f"worker{i}",
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
        )
        for i in range(2)
    ]
    for i, process in enumerate(processes):
        assert process.wait(timeout=150) == 0, _read(tmp_path, f"worker{i}", "err")[-3000:]
    weights = [dict(np.load(tmp_path / f"weights{i}.npz")) for i in range(2)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        np.testing.assert_array_equal(weights[0][name], weights[1][name], err_msg=name)
    # Only the chief keeps checkpoints; the other worker's temporary copy is gone.
    assert [checkpoints.step_of(p) for p in fakes.assert_checkpoints_readable(model_dir)] == [2, 4]
    assert not os.path.exists(model_dir / "worker_tmp" / "1")
    assert "step 4/4" in _read(tmp_path, "worker0") and "step" not in _read(tmp_path, "worker1")

    # Same global batches on one device: worker i's shard holds examples i, i+2, ...
    params = fakes.make_params(total_steps=4, iterations_per_loop=2, train_batch_size=4)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    trainer = trainer_lib.Trainer(
        fakes.FakeModelFn(params, num_train_examples=8),
        params,
        config_lib.from_params(params, strategy),
        str(tmp_path / "reference"),
        strategy,
    )
    trainer.train(4)
    for v in trainer.model.variables:
        np.testing.assert_allclose(weights[0][v.path], v.numpy(), atol=1e-5, err_msg=v.path)


def test_sigkill_then_restart_resumes_from_last_checkpoint(tmp_path):
    model_dir = tmp_path / "run"

    def has_checkpoint_at_10():
        return any(
            checkpoints.step_of(p) >= 10 for p in checkpoints.checkpoint_paths(str(model_dir))
        )

    process = _start(["train", model_dir, 1_000_000, 5, 5], tmp_path, "killed")
    _wait_for(has_checkpoint_at_10, process, "a checkpoint at step >= 10")
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    paths = fakes.assert_checkpoints_readable(model_dir)
    last = checkpoints.step_of(paths[-1])
    assert last >= 10 and last % 5 == 0

    restarted = _start(["train", model_dir, last + 5, 5, 5], tmp_path, "restarted")
    assert restarted.wait(timeout=90) == 0, _read(tmp_path, "restarted", "err")[-3000:]
    assert f"resumed from ckpt-{last} at step {last}" in _read(tmp_path, "restarted", "err")
    result = json.loads(re.search(r"^RESULT: (.*)$", _read(tmp_path, "restarted"), re.M).group(1))
    assert result["step"] == last + 5
    assert checkpoints.step_of(fakes.assert_checkpoints_readable(model_dir)[-1]) == last + 5


def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path):
    model_dir = tmp_path / "run"
    process = _start(["train", model_dir, 1_000_000, 5, 10**9], tmp_path, "terminated")
    _wait_for(
        lambda: "step 5/" in _read(tmp_path, "terminated"), process, "the first progress line"
    )
    assert not checkpoints.checkpoint_paths(str(model_dir))  # interval too long to save
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143, _read(tmp_path, "terminated", "err")[-3000:]
    match = re.search(
        r"^PREEMPTED: SIGTERM received: stopped at step (\d+), checkpoint (\S+)$",
        _read(tmp_path, "terminated"),
        re.M,
    )
    assert match, _read(tmp_path, "terminated")[-2000:]
    step = int(match.group(1))
    paths = fakes.assert_checkpoints_readable(model_dir)
    assert [checkpoints.step_of(p) for p in paths] == [step] and step >= 5
    assert match.group(2) == paths[0]
