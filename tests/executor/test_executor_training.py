"""Single-process executor tests with a tiny conv net: resume, NaN stop, XLA, warm start,
exact step math (frozen variables, L2, clipping)."""

import logging
import os

import executor_fakes as fakes
import keras
import numpy as np
import pytest
import tensorflow as tf

from detection import executor
from detection.core import modes
from detection.executor import checkpoints, distribution, warm_start
from detection.executor import config as config_lib
from detection.executor import trainer as trainer_lib


@pytest.fixture(scope="module")
def strategy():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def _trainer(params, model_dir, strategy, **model_fn_kwargs):
    model_fn = fakes.FakeModelFn(params, **model_fn_kwargs)
    config = config_lib.from_params(params, strategy)
    return trainer_lib.Trainer(model_fn, params, config, str(model_dir), strategy)


def _values(variables):
    # Optimizer names are made unique per process (sgd, sgd_1...): key slots without them.
    return {
        v.path.split("/", 1)[-1] if v.path.startswith("sgd") else v.path: np.array(v.numpy())
        for v in variables
    }


def _assert_same(a, b, atol):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=atol, rtol=0, err_msg=name)


def test_resume_restores_step_and_optimizer_slots(tmp_path, strategy):
    params6 = fakes.make_params(total_steps=6, iterations_per_loop=3)
    result = executor.run(
        "train", fakes.FakeModelFn(params6), params6, str(tmp_path / "a"), strategy
    )
    assert result["step"] == 6
    assert [checkpoints.step_of(p) for p in checkpoints.checkpoint_paths(tmp_path / "a")] == [3, 6]
    assert os.path.exists(tmp_path / "a" / "params.yaml")

    params12 = fakes.make_params(total_steps=12, iterations_per_loop=3)
    resumed = _trainer(params12, tmp_path / "a", strategy)
    assert resumed.step == 6
    # Momentum slots come back from ckpt-6 (a fresh optimizer would hold zeros).
    slots = [v for v in resumed.optimizer.variables if "momentum" in v.path]
    assert len(slots) == 6 and all(np.any(v.numpy() != 0) for v in slots)
    resumed.train(12)

    straight = _trainer(params12, tmp_path / "b", strategy)
    straight.train(12)
    assert resumed.step == straight.step == 12
    _assert_same(_values(resumed.model.variables), _values(straight.model.variables), 1e-6)
    _assert_same(_values(resumed.optimizer.variables), _values(straight.optimizer.variables), 1e-6)


def test_nan_loss_stops_with_the_step_and_keeps_last_checkpoint(tmp_path, strategy):
    params = fakes.make_params(total_steps=10, iterations_per_loop=2)
    model_fn = fakes.FakeModelFn(params, num_train_examples=20, nan_step=5)
    with pytest.raises(trainer_lib.NonFiniteLossError, match=r"not finite at step 5 "):
        executor.run("train", model_fn, params, str(tmp_path), strategy)
    paths = fakes.assert_checkpoints_readable(tmp_path)
    assert [checkpoints.step_of(p) for p in paths] == [2, 4]
    reader = tf.train.load_checkpoint(paths[-1])
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), name


def test_train_step_compiles_with_xla(tmp_path, strategy):
    results = {}
    for jit in (True, False):
        params = fakes.make_params(total_steps=2, iterations_per_loop=2, train={"jit_compile": jit})
        trainer = _trainer(params, tmp_path / str(jit), strategy)
        trainer.train(2)
        results[jit] = (_values(trainer.model.variables), trainer.last_losses["total_loss"])
        if jit:
            features, labels = next(
                iter(trainer._model_fn.input_fn(modes.TRAIN)(tf.distribute.InputContext()))
            )
            hlo = trainer.train_step.compute_gradients.experimental_get_compiler_ir(
                features, labels
            )(stage="hlo")
            assert "HloModule" in hlo and "convolution" in hlo
    _assert_same(results[True][0], results[False][0], 1e-5)
    assert results[True][1] == pytest.approx(results[False][1], rel=1e-5)


def test_one_step_matches_reference_with_frozen_l2_and_clipping(tmp_path, strategy):
    lr, wd, clip = 0.1, 1e-2, 0.05
    params = fakes.make_params(total_steps=1, iterations_per_loop=1, learning_rate=lr)
    params.override(
        {
            "train": {
                "optimizer": {"type": "sgd"},
                "l2_weight_decay": wd,
                "gradient_clip_norm": clip,
                "frozen_variable_prefix": "conv/",
            }
        }
    )
    trainer = _trainer(params, tmp_path, strategy)
    assert [v.path for v in trainer.regularized_variables] == ["head/kernel"]

    model_fn = fakes.FakeModelFn(params)
    reference = model_fn.build_model()
    before = _values(reference.variables)
    features, labels = next(iter(model_fn.input_fn(modes.TRAIN)(tf.distribute.InputContext())))
    trained = [v for v in reference.trainable_variables if not v.path.startswith("conv/")]
    with tf.GradientTape() as tape:
        loss = model_fn(reference, features, labels, modes.TRAIN)["total_loss"]
        loss += wd * 0.5 * tf.reduce_sum(tf.square(reference.get_layer("head").kernel))
    grads = [g.numpy() for g in tape.gradient(loss, trained)]
    norm = np.sqrt(sum(np.sum(g * g) for g in grads))
    assert norm > clip  # the clip is active, so the test checks it
    expected = dict(before)
    for v, g in zip(trained, grads):
        expected[v.path] = before[v.path] - lr * g * clip / norm
    # Batch-norm moving statistics move by the model call; take them from the reference.
    for v in reference.non_trainable_variables:
        expected[v.path] = v.numpy()

    trainer.train(1)
    after = _values(trainer.model.variables)
    _assert_same(after, expected, 1e-6)
    np.testing.assert_array_equal(after["conv/kernel"], before["conv/kernel"])
    assert trainer.last_losses["total_loss"] == pytest.approx(float(loss), rel=1e-5)


def test_warm_start_loads_matching_and_skips_other_head(tmp_path, strategy, caplog):
    source = fakes.make_params(total_steps=2, iterations_per_loop=2)
    executor.run("train", fakes.FakeModelFn(source), source, str(tmp_path / "src"), strategy)
    src = tf.train.load_checkpoint(str(tmp_path / "src" / "ckpt-2"))
    src_values = {}
    for name, (key, _) in warm_start.checkpoint_entries(str(tmp_path / "src" / "ckpt-2")).items():
        src_values[name] = src.get_tensor(key)
    assert set(src_values) == {
        "conv/kernel",
        "conv/bias",
        "bn/gamma",
        "bn/beta",
        "bn/moving_mean",
        "bn/moving_variance",
        "head/kernel",
        "head/bias",
    }

    params = fakes.make_params(
        total_steps=3,
        iterations_per_loop=1,
        train={
            "checkpoint": {"path": str(tmp_path / "src"), "skip_variables_regex": ".*moving_var"}
        },
    )
    with caplog.at_level(logging.INFO, logger="detection.executor"):
        trainer = _trainer(params, tmp_path / "dst", strategy, num_classes=5)
    values = _values(trainer.model.variables)
    for name in ("conv/kernel", "conv/bias", "bn/gamma", "bn/beta", "bn/moving_mean"):
        np.testing.assert_array_equal(values[name], src_values[name], err_msg=name)
    fresh = _values(fakes.FakeModelFn(params, num_classes=5).build_model().variables)
    for name in ("head/kernel", "head/bias", "bn/moving_variance"):
        np.testing.assert_array_equal(values[name], fresh[name], err_msg=name)
    log = caplog.text
    assert "loaded 5 variables, skipped 3" in log
    assert "skipped head/kernel: shape [4, 3] in checkpoint vs [4, 5]" in log
    assert "skipped bn/moving_variance: matches skip_variables_regex" in log

    # Once model_dir has its own checkpoint, it wins over train.checkpoint.path.
    trainer.train(1)
    own = _values(trainer.model.variables)
    again = _trainer(params, tmp_path / "dst", strategy, num_classes=5)
    assert again.step == 1
    _assert_same(_values(again.model.variables), own, 0)


def test_warm_start_prefix_and_bad_path(tmp_path, strategy):
    source = fakes.make_params(total_steps=1, iterations_per_loop=1)
    executor.run("train", fakes.FakeModelFn(source), source, str(tmp_path / "src"), strategy)
    src = _values(_trainer(source, tmp_path / "src", strategy).model.variables)
    params = fakes.make_params(
        train={"checkpoint": {"path": str(tmp_path / "src" / "ckpt-1"), "prefix": "head/"}}
    )
    values = _values(_trainer(params, tmp_path / "dst", strategy).model.variables)
    fresh = _values(fakes.FakeModelFn(params).build_model().variables)
    np.testing.assert_array_equal(values["head/kernel"], src["head/kernel"])
    np.testing.assert_array_equal(values["conv/kernel"], fresh["conv/kernel"])
    assert not np.array_equal(src["head/kernel"], fresh["head/kernel"])
    bad = fakes.make_params(train={"checkpoint": {"path": str(tmp_path / "nowhere")}})
    with pytest.raises(ValueError, match="train.checkpoint.path=.*nowhere"):
        _trainer(bad, tmp_path / "dst2", strategy)


def test_bfloat16_only_where_native_and_mixed_policy_trains(
    tmp_path, strategy, caplog, monkeypatch
):
    with caplog.at_level(logging.INFO, logger="detection.executor"):
        policy = distribution.compute_dtype_policy(True, strategy, cpu_flags={"avx2", "fma"})
    assert policy.name == "float32"
    assert "none of avx512_bf16, amx_bf16 (no native bfloat16): computing in float32" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="detection.executor"):
        policy = distribution.compute_dtype_policy(True, strategy, cpu_flags={"amx_bf16"})
    assert policy.name == "mixed_bfloat16" and "CPU has amx_bf16" in caplog.text
    assert distribution.compute_dtype_policy(False, strategy, {"amx_bf16"}).name == "float32"

    # The mixed policy, forced whatever this CPU has: bfloat16 compute, float32 variables
    # and losses.
    monkeypatch.setattr(
        distribution,
        "compute_dtype_policy",
        lambda use_bfloat16, strategy: keras.DTypePolicy("mixed_bfloat16"),
    )
    params = fakes.make_params(total_steps=2, iterations_per_loop=2)
    trainer = _trainer(params, tmp_path / "bf16", strategy)
    assert trainer.model.get_layer("conv").compute_dtype == "bfloat16"
    assert {v.dtype for v in trainer.model.variables} == {"float32"}
    trainer.train(2)
    monkeypatch.undo()
    reference = _trainer(
        fakes.make_params(total_steps=2, iterations_per_loop=2), tmp_path / "f32", strategy
    )
    reference.train(2)
    assert reference.model.get_layer("conv").compute_dtype == "float32"
    assert trainer.last_losses["total_loss"] == pytest.approx(
        reference.last_losses["total_loss"], rel=2e-2
    )


def test_warm_start_from_name_based_checkpoint(tmp_path, strategy):
    # A TF1-style checkpoint: keys are variable names, here under an outer scope.
    rng = np.random.default_rng(3)
    entries = {
        "outer/conv/kernel": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
        "outer/head/kernel": rng.normal(size=(4, 7)).astype(np.float32),
        "global_step": np.array(100, np.int64),
    }
    prefix = str(tmp_path / "tf1" / "model.ckpt-100")
    tf.io.gfile.makedirs(str(tmp_path / "tf1"))
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=list(entries),
        shape_and_slices=[""] * len(entries),
        tensors=[tf.constant(v) for v in entries.values()],
    )
    model = fakes.FakeModelFn(fakes.make_params()).build_model()
    loaded, skipped = warm_start.warm_start(model, prefix)
    assert loaded == ["conv/kernel"]
    np.testing.assert_array_equal(
        model.get_layer("conv").kernel.numpy(), entries["outer/conv/kernel"]
    )
    assert ("head/kernel", "shape [4, 7] in checkpoint vs [4, 3]") in skipped
    assert ("conv/bias", "not in checkpoint") in skipped
