"""A tiny model fn for executor tests: conv + batch norm + dense on in-memory data.

Everything is deterministic: weights come from a NumPy generator (not Keras's initializers),
data from fixed seeds, so two builds (or two processes) start from identical states.
"""

import copy
import glob
import os

import keras
import numpy as np
import tensorflow as tf

from detection.configs.base_config import BASE_CFG
from detection.core import model_fn as model_fn_lib
from detection.core import modes
from detection.executor import checkpoints
from detection.hyperparameters.params_dict import ParamsDict

IMAGE_SIZE = 8


def make_params(
    total_steps=6,
    iterations_per_loop=3,
    train_batch_size=2,
    eval_batch_size=2,
    learning_rate=0.1,
    train=None,
    evaluation=None,
):
    """Base defaults + small train/eval settings, then `train` / `evaluation` overrides.

    The overrides may add keys (the executor's new keys, absent from older configs).
    """
    params = ParamsDict(copy.deepcopy(BASE_CFG))
    params.override(
        {
            "architecture": {"use_bfloat16": False},
            "train": {
                "total_steps": total_steps,
                "iterations_per_loop": iterations_per_loop,
                "train_batch_size": train_batch_size,
                "optimizer": {"type": "momentum", "momentum": 0.9},
                "learning_rate": {
                    "type": "step",
                    "warmup_learning_rate": 0.0,
                    "warmup_steps": 0,
                    "init_learning_rate": learning_rate,
                    "learning_rate_levels": [],
                    "learning_rate_steps": [],
                },
                "l2_weight_decay": 1e-3,
            },
            "eval": {
                "eval_batch_size": eval_batch_size,
                "min_eval_interval": 0,
                "num_steps_per_eval": 2,
            },
        }
    )
    params.override({"train": train or {}, "eval": evaluation or {}}, is_strict=False)
    return params


def deterministic_weights(model, seed=0):
    """Assigns fixed pseudo-random values (ones for BN scales/variances, zeros for biases)."""
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        name = variable.path
        if name.endswith(("gamma", "moving_variance")):
            value = np.ones(variable.shape)
        elif name.endswith(("bias", "beta", "moving_mean")):
            value = np.zeros(variable.shape)
        else:
            value = rng.normal(0.0, 0.3, size=variable.shape)
        variable.assign(value.astype(np.float32))


def train_arrays(num_examples=12, num_classes=3, seed=1, nan_step=None, batch_size=2):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(num_examples, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    classes = rng.integers(0, num_classes, size=num_examples).astype(np.int32)
    if nan_step is not None:
        images[(nan_step - 1) * batch_size] = np.nan
    return images, classes


def eval_arrays(num_examples=5, num_classes=3, seed=2):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(num_examples, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    classes = rng.integers(0, num_classes, size=num_examples).astype(np.int32)
    return images, classes


class AccuracyEvaluator:
    """Top-1 accuracy over valid examples; remembers the source ids it saw."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.correct, self.count, self.source_ids = 0, 0, []

    def update(self, predictions, groundtruths):
        valid = predictions.get("valid", np.ones(len(predictions["logits"]), bool))
        predicted = np.argmax(predictions["logits"][valid], axis=-1)
        self.correct += int(np.sum(predicted == groundtruths["classes"][valid]))
        self.count += int(np.sum(valid))
        self.source_ids.extend(int(i) for i in predictions["source_id"][valid])

    def evaluate(self):
        return {"accuracy": self.correct / max(self.count, 1), "num_examples": self.count}


class FakeModelFn(model_fn_lib.ModelFn):
    """Conv(4) -> BN -> ReLU -> mean pool -> Dense(num_classes); softmax CE loss."""

    def __init__(
        self,
        params,
        num_classes=3,
        num_train_examples=12,
        nan_step=None,
        sync_bn=False,
        num_eval_examples=5,
    ):
        super().__init__(params)
        self.num_classes = num_classes
        self.sync_bn = sync_bn
        self.train_data = train_arrays(
            num_train_examples,
            num_classes,
            nan_step=nan_step,
            batch_size=params.train.train_batch_size,
        )
        self.eval_data = eval_arrays(num_eval_examples, num_classes)
        self.evaluator = None

    def build_model(self):
        policy = self.dtype_policy
        inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", name="conv", dtype=policy)(inputs)
        x = keras.layers.BatchNormalization(name="bn", synchronized=self.sync_bn, dtype=policy)(x)
        x = keras.layers.ReLU(dtype=policy)(x)
        x = keras.layers.GlobalAveragePooling2D(dtype=policy)(x)
        outputs = keras.layers.Dense(self.num_classes, name="head", dtype=policy)(x)
        model = keras.Model(inputs, outputs, name="fake_net")
        deterministic_weights(model)
        return model

    def __call__(self, model, features, labels, mode):
        logits = tf.cast(model(features["images"], training=mode == modes.TRAIN), tf.float32)
        if mode == modes.PREDICT:
            return {"predictions": {"logits": logits}}
        cls_loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels["classes"], logits=logits)
        )
        box_loss = 0.01 * tf.reduce_mean(tf.square(logits))
        if mode == modes.TRAIN:
            return {
                "total_loss": cls_loss + box_loss,
                "losses": {"cls_loss": cls_loss, "box_loss": box_loss},
            }
        return {
            "predictions": {"logits": logits, "source_id": features["source_ids"]},
            "losses": {"cls_loss": cls_loss},
        }

    def input_fn(self, mode):
        if mode == modes.TRAIN:
            images, classes = self.train_data
            global_batch = self.params.train.train_batch_size

            def train_fn(context):
                batch = context.get_per_replica_batch_size(global_batch)
                dataset = tf.data.Dataset.from_tensor_slices(
                    ({"images": images}, {"classes": classes})
                )
                dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
                return dataset.repeat().batch(batch, drop_remainder=True)

            return train_fn

        images, classes = self.eval_data
        global_batch = self.params.eval.eval_batch_size
        padded = -len(images) % global_batch
        valid = np.arange(len(images) + padded) < len(images)
        images = np.concatenate([images, np.zeros((padded,) + images.shape[1:], np.float32)])
        classes = np.concatenate([classes, np.zeros(padded, np.int32)])
        source_ids = np.arange(len(images), dtype=np.int64)

        def eval_fn(context):
            batch = context.get_per_replica_batch_size(global_batch)
            dataset = tf.data.Dataset.from_tensor_slices(
                (
                    {"images": images, "valid": valid, "source_ids": source_ids},
                    {
                        "classes": classes,
                        "groundtruths": {"classes": classes, "source_id": source_ids},
                    },
                )
            )
            return dataset.batch(batch, drop_remainder=True)

        return eval_fn

    def build_evaluator(self):
        self.evaluator = AccuracyEvaluator()
        return self.evaluator


def assert_checkpoints_readable(model_dir):
    """Every checkpoint listed, and every `.index` on disk, reads back; returns the listed."""
    paths = checkpoints.checkpoint_paths(str(model_dir))
    assert paths
    on_disk = [p[: -len(".index")] for p in glob.glob(os.path.join(model_dir, "*.index"))]
    for path in set(paths) | set(on_disk):
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    return paths
