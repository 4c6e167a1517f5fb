"""Evaluation, train_and_eval, continuous eval, summaries and progress output."""

import glob
import json
import os
import re

import executor_fakes as fakes
import numpy as np
import pytest
import tensorflow as tf

from detection import executor
from detection.executor import checkpoints, distribution, evaluation, inputs, summaries


@pytest.fixture(scope="module")
def strategy():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def _reference_accuracy(model, num_examples):
    images, classes = (a[:num_examples] for a in fakes.eval_arrays())
    logits = model(images, training=False).numpy()
    return float(np.mean(np.argmax(logits, -1) == classes))


def _event_tags(directory):
    tags = set()
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_train_and_eval_writes_metrics_per_checkpoint(tmp_path, strategy, capsys):
    params = fakes.make_params(total_steps=4, iterations_per_loop=2)
    model_fn = fakes.FakeModelFn(params)
    metrics = executor.run("train_and_eval", model_fn, params, str(tmp_path), strategy)
    files = sorted(os.listdir(tmp_path / "eval"))
    assert [f for f in files if f.endswith(".json")] == ["metrics-2.json", "metrics-4.json"]
    saved = json.loads((tmp_path / "eval" / "metrics-4.json").read_text())
    assert saved["step"] == 4 and saved["metrics"] == pytest.approx(metrics)
    # Every real example exactly once, in order; the padded 6th is excluded.
    assert metrics["num_examples"] == 5 and model_fn.evaluator.source_ids == [0, 1, 2, 3, 4]
    restored = fakes.FakeModelFn(params).build_model()
    checkpoints.restore_model(restored, str(tmp_path / "ckpt-4"))
    assert metrics["accuracy"] == pytest.approx(_reference_accuracy(restored, 5))
    assert metrics["losses/cls_loss"] > 0
    assert {"accuracy", "num_examples", "losses/cls_loss"} <= _event_tags(tmp_path / "eval")
    assert {
        "total_loss",
        "cls_loss",
        "box_loss",
        "l2_regularization_loss",
        "learning_rate",
        "steps_per_second",
        "images_per_second",
    } <= _event_tags(tmp_path / "train")
    out = capsys.readouterr().out
    assert re.search(
        r"^step 4/4 \| loss [\d.]+ \(box [\d.e-]+, cls [\d.]+, l2 [\d.e-]+\) \| "
        r"lr 0\.1 \| [\d.]+ img/s \| ETA 0s$",
        out,
        re.M,
    ), out


def test_continuous_eval_stops_at_total_steps_and_eval_samples(tmp_path, strategy):
    params = fakes.make_params(total_steps=4, iterations_per_loop=2)
    executor.run("train", fakes.FakeModelFn(params), params, str(tmp_path), strategy)
    params.override({"eval": {"eval_samples": 3, "eval_timeout": 5, "suffix": "small"}})
    model_fn = fakes.FakeModelFn(params)
    metrics = executor.run("eval", model_fn, params, str(tmp_path), strategy)
    assert metrics["num_examples"] == 3 and model_fn.evaluator.source_ids == [0, 1, 2]
    assert os.path.exists(tmp_path / "eval_small" / "metrics-4.json")
    restored = fakes.FakeModelFn(params).build_model()
    checkpoints.restore_model(restored, str(tmp_path / "ckpt-4"))
    assert metrics["accuracy"] == pytest.approx(_reference_accuracy(restored, 3))


def test_eval_without_checkpoint_times_out_empty(tmp_path, strategy):
    params = fakes.make_params(evaluation={"eval_timeout": 1})
    assert executor.run("eval", fakes.FakeModelFn(params), params, str(tmp_path), strategy) == {}


def test_batch_errors_name_the_numbers(strategy):
    with pytest.raises(
        ValueError,
        match=r"train.train_batch_size=10 is not divisible by the 4 "
        r"replicas",
    ):
        distribution.per_replica_batch_size(10, 4, "train.train_batch_size")
    params = fakes.make_params(eval_batch_size=2)
    model_fn = fakes.FakeModelFn(params)
    wrong = fakes.make_params(eval_batch_size=4)  # the input_fn batches 2, executor expects 4
    with pytest.raises(
        ValueError,
        match=r"features/images has batch size 2 but each replica "
        r"should get 4",
    ):
        inputs.distributed_dataset(
            strategy, model_fn.input_fn("eval"), wrong.eval.eval_batch_size, "eval.eval_batch_size"
        )
    with pytest.raises(ValueError, match="unknown executor mode 'predict'"):
        executor.run("predict", model_fn, params, "/tmp/unused", strategy)


def test_evaluation_requires_predictions(strategy):
    params = fakes.make_params()

    class NoPredictions(fakes.FakeModelFn):
        def __call__(self, model, features, labels, mode):
            return {"losses": {}}

    model_fn = NoPredictions(params)
    model = model_fn.build_model()
    with pytest.raises(ValueError, match="'eval' output must be a dict with 'predictions'"):
        evaluation.Evaluation(strategy, model_fn, model, 2).run()


def test_format_duration_and_progress_line():
    assert summaries.format_duration(3725) == "1h02m"
    assert summaries.format_duration(185) == "3m05s"
    assert summaries.format_duration(12.4) == "12s"
    line = summaries.progress_line(
        600,
        22500,
        {
            "total_loss": 1.2344,
            "model_loss": 1.0,
            "l2_regularization_loss": 0.0,
            "cls_loss": 0.8,
            "box_loss": 0.01,
        },
        0.08,
        12.34,
        3725,
    )
    assert line == (
        "step 600/22500 | loss 1.234 (cls 0.8, box 0.01) | lr 0.08 | 12.3 img/s | ETA 1h02m"
    )
