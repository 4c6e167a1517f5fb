"""Resuming from a damaged model_dir: the newest readable checkpoint, or an error; never a
fresh start that overwrites the run's checkpoints (issue 15, item 1)."""

import hashlib
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import executor_fakes as fakes
from detection import executor
from detection.executor import checkpoint_files
from detection.executor import checkpoints
from detection.executor import config as config_lib
from detection.executor import trainer as trainer_lib


@pytest.fixture(scope="module")
def strategy():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, strategy):
    """A run trained to step 6 with checkpoints at steps 2, 4 and 6."""
    model_dir = tmp_path_factory.mktemp("trained") / "run"
    params = fakes.make_params(total_steps=6, iterations_per_loop=2)
    executor.run("train", fakes.FakeModelFn(params), params, str(model_dir), strategy)
    return model_dir


def _copy(trained_dir, tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(trained_dir, model_dir)
    return model_dir


def _digests(model_dir):
    return {
        name: hashlib.sha256((model_dir / name).read_bytes()).hexdigest()
        for name in sorted(os.listdir(model_dir))
        if name.startswith("ckpt-") or name in ("checkpoint", "params.yaml")
    }


def _trainer(model_dir, strategy, total_steps=8, num_classes=3):
    params = fakes.make_params(total_steps=total_steps, iterations_per_loop=2)
    model_fn = fakes.FakeModelFn(params, num_classes=num_classes)
    config = config_lib.from_params(params, strategy)
    return trainer_lib.Trainer(model_fn, params, config, str(model_dir), strategy)


def _truncate(path, keep_bytes):
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes] if keep_bytes >= 0 else data[:keep_bytes])


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    ["files_deleted", "data_truncated", "data_empty", "index_truncated", "data_bitflip"],
)
def test_damaged_newest_checkpoint_resumes_from_the_previous_one(
    trained_dir, tmp_path, strategy, caplog, damage
):
    model_dir = _copy(trained_dir, tmp_path)
    data, index = model_dir / "ckpt-6.data-00000-of-00001", model_dir / "ckpt-6.index"
    if damage == "files_deleted":
        data.unlink()
        index.unlink()
    elif damage == "data_truncated":
        _truncate(data, -10)
    elif damage == "data_empty":
        _truncate(data, 0)
    elif damage == "index_truncated":
        _truncate(index, -20)
    else:
        _flip_byte(data, 5)
    older = {k: v for k, v in _digests(model_dir).items() if k.startswith(("ckpt-2", "ckpt-4"))}
    with caplog.at_level(logging.INFO, logger="detection"):
        trainer = _trainer(model_dir, strategy)
    assert trainer.step == 4
    assert "resumed from ckpt-4 at step 4" in caplog.messages
    assert any(m.startswith(f"cannot resume from {model_dir}/ckpt-6") for m in caplog.messages)
    # The restored values are ckpt-4's, whatever the failed attempt on ckpt-6 loaded first.
    reader = tf.train.load_checkpoint(str(model_dir / "ckpt-4"))
    kernel = checkpoints.model_variables(trainer.model)["conv/kernel"]
    key = next(k for k in reader.get_variable_to_shape_map() if "conv.Skernel" in k)
    assert "OPTIMIZER_SLOT" not in key
    np.testing.assert_array_equal(kernel.numpy(), reader.get_tensor(key))
    trainer.train(8)
    assert trainer.step == 8
    digests = _digests(model_dir)
    assert {k: digests[k] for k in older} == older  # ckpt-2, ckpt-4 untouched.
    fakes.assert_checkpoints_readable(model_dir)


def test_missing_state_file_resumes_from_the_newest_file_on_disk(trained_dir, tmp_path, strategy):
    model_dir = _copy(trained_dir, tmp_path)
    (model_dir / "checkpoint").unlink()
    assert _trainer(model_dir, strategy).step == 6


def test_state_file_naming_only_missing_files_is_an_error(trained_dir, tmp_path, strategy):
    model_dir = _copy(trained_dir, tmp_path)
    for name in os.listdir(model_dir):
        if name.startswith("ckpt-"):
            os.remove(model_dir / name)
    before = _digests(model_dir)
    with pytest.raises(checkpoints.CheckpointError) as error:
        _trainer(model_dir, strategy)
    message = str(error.value)
    assert "\n" not in message
    assert f"{model_dir} holds checkpoints but none can be restored" in message
    for step in (2, 4, 6):
        assert f"ckpt-{step}.index is missing" in message
    assert _digests(model_dir) == before


def test_every_checkpoint_unreadable_is_an_error_and_nothing_is_written(
    trained_dir, tmp_path, strategy
):
    model_dir = _copy(trained_dir, tmp_path)
    for step in (2, 4, 6):
        _truncate(model_dir / f"ckpt-{step}.data-00000-of-00001", 100)
    before = _digests(model_dir)
    params = fakes.make_params(total_steps=8, iterations_per_loop=2)
    with pytest.raises(checkpoints.CheckpointError, match="none can be restored"):
        executor.run("train", fakes.FakeModelFn(params), params, str(model_dir), strategy)
    assert _digests(model_dir) == before


@pytest.mark.parametrize("content", ["", "garbage {{{\n", "model_checkpoint_path: ckpt-6\n"])
def test_damaged_state_file_is_an_error(trained_dir, tmp_path, strategy, content):
    model_dir = _copy(trained_dir, tmp_path)
    (model_dir / "checkpoint").write_text(content)
    with pytest.raises(checkpoints.CheckpointError, match=f"{model_dir}/checkpoint"):
        _trainer(model_dir, strategy)


def test_another_architecture_is_refused_before_params_yaml_is_written(
    trained_dir, tmp_path, strategy
):
    model_dir = _copy(trained_dir, tmp_path)
    before = _digests(model_dir)
    params = fakes.make_params(total_steps=8, iterations_per_loop=2, learning_rate=0.5)
    with pytest.raises(checkpoints.CheckpointError, match="does not match this model"):
        executor.run(
            "train", fakes.FakeModelFn(params, num_classes=5), params, str(model_dir), strategy
        )
    assert _digests(model_dir) == before


def test_candidates_merge_the_state_file_and_the_disk(trained_dir, tmp_path):
    model_dir = _copy(trained_dir, tmp_path)
    (model_dir / "ckpt-8.index").write_bytes(b"")  # On disk, unlisted.
    (model_dir / "ckpt-6.index").unlink()  # Listed, half gone.
    found = checkpoint_files.candidates(str(model_dir))
    assert [(c.name, c.step, c.listed) for c in found] == [
        ("ckpt-8", 8, False),
        ("ckpt-6", 6, True),
        ("ckpt-4", 4, True),
        ("ckpt-2", 2, True),
    ]
    assert checkpoint_files.missing_files(found[1]) == "ckpt-6.index is missing"
    assert checkpoint_files.missing_files(found[0]).startswith("ckpt-8.index is unreadable")
    assert checkpoint_files.missing_files(found[2]) is None
    assert checkpoint_files.candidates(str(tmp_path / "fresh")) == []


def test_restore_model_names_an_unreadable_checkpoint(trained_dir, tmp_path, strategy):
    model_dir = _copy(trained_dir, tmp_path)
    _truncate(model_dir / "ckpt-6.data-00000-of-00001", -10)
    model = trainer_lib.build_model(
        fakes.FakeModelFn(fakes.make_params()), strategy, use_bfloat16=False
    )
    with pytest.raises(checkpoints.CheckpointError, match="ckpt-6 is unreadable"):
        checkpoints.restore_model(model, str(model_dir / "ckpt-6"))
    with pytest.raises(tf.errors.NotFoundError):
        checkpoints.restore_model(model, str(model_dir / "ckpt-7"))
