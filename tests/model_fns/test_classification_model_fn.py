"""ClassificationModelFn on the tiny classification shapes dataset: the model-fn contract,
XLA-compiled train and eval steps, padding kept out of the eval loss, and top-k accuracy over
the whole eval set (through the executor's evaluation pass) equal to a NumPy reference."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.configs import loader
from detection.core.modes import EVAL, PREDICT, TRAIN
from detection.executor import evaluation, optimizers
from detection.model_fns import factory as model_fn_factory

BATCH = 2
NUM_CLASSES = 4  # background + circle, square, triangle
SIZE = 64


def tiny_params(paths, **override):
    tree = {
        "architecture": {"num_classes": NUM_CLASSES, "use_bfloat16": False},
        "resnet": {"resnet_depth": 10},
        "classification_parser": {"output_size": [SIZE, SIZE]},
        "classification_head": {"endpoints_num_filters": 8, "dropout_rate": 0.2},
        "train": {
            "train_batch_size": BATCH,
            "total_steps": 2,
            "label_smoothing": 0.1,
            "train_file_pattern": paths["train_file_pattern"],
        },
        "eval": {"eval_batch_size": BATCH, "eval_file_pattern": paths["val_file_pattern"]},
    }
    for dotted, value in override.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return loader.load_params("classification", [], tree)


def _build(params, seed=0):
    keras.utils.set_random_seed(seed)
    model_fn = model_fn_factory.model_fn_from_params(params)
    return model_fn, model_fn.build_model()


@pytest.fixture(scope="module")
def batches(tiny_classification_shapes):
    model_fn = model_fn_factory.model_fn_from_params(tiny_params(tiny_classification_shapes))
    return next(iter(model_fn.input_fn(TRAIN)(None))), next(iter(model_fn.input_fn(EVAL)(None)))


def _numpy_cross_entropy(logits, labels, smoothing):
    targets = np.eye(logits.shape[1])[labels] * (1 - smoothing) + smoothing / logits.shape[1]
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-(targets * log_probs).sum(1).mean())


def test_train_and_eval_outputs(tiny_classification_shapes, batches):
    params = tiny_params(tiny_classification_shapes)
    model_fn, model = _build(params)
    features, labels = batches[0]
    outputs = model_fn(model, features, labels, TRAIN)
    assert outputs["total_loss"].shape == () and outputs["total_loss"].dtype == tf.float32
    # Dropout makes two training passes differ; the loss must still be the smoothed
    # cross-entropy of the logits of its own pass, checked here with dropout off.
    no_dropout_fn, no_dropout = _build(
        tiny_params(tiny_classification_shapes, **{"classification_head.dropout_rate": 0.0})
    )
    loss = no_dropout_fn(no_dropout, features, labels, TRAIN)["total_loss"]
    logits = no_dropout(features["images"], training=True)["logits"].numpy()
    expected = _numpy_cross_entropy(logits, labels["classes"].numpy(), 0.1)
    assert float(loss) == pytest.approx(expected, rel=1e-4)

    eval_features, eval_labels = batches[1]
    result = model_fn(model, eval_features, eval_labels, EVAL)
    assert set(result) == {"predictions", "losses"}
    assert result["predictions"]["logits"].shape == (BATCH, NUM_CLASSES)
    assert result["predictions"]["logits"].dtype == tf.float32
    assert set(result["losses"]) == {"model_loss"}
    predict = model_fn(model, eval_features, None, PREDICT)
    assert set(predict) == {"predictions"}
    np.testing.assert_allclose(
        predict["predictions"]["logits"], result["predictions"]["logits"], rtol=1e-6
    )


def test_padded_examples_do_not_enter_the_eval_loss(tiny_classification_shapes):
    """10 val images in batches of 4: the last batch holds 2 images and 2 padding entries."""
    params = tiny_params(tiny_classification_shapes, **{"eval.eval_batch_size": 4})
    model_fn, model = _build(params)
    features, labels = list(model_fn.input_fn(EVAL)(None))[-1]
    np.testing.assert_array_equal(features["valid"], [True, True, False, False])
    padded = model_fn(model, features, labels, EVAL)["losses"]["model_loss"]
    real = model_fn(
        model, {"images": features["images"][:2]}, {"classes": labels["classes"][:2]}, EVAL
    )["losses"]["model_loss"]
    assert float(padded) == pytest.approx(float(real), rel=1e-5)


def test_train_and_eval_steps_compile_with_xla(tiny_classification_shapes, batches):
    params = tiny_params(tiny_classification_shapes, **{"classification_head.dropout_rate": 0.0})
    model_fn, model = _build(params)
    features, labels = batches[0]
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        eager_loss = model_fn(model, features, labels, TRAIN)["total_loss"]
    eager_norm = tf.linalg.global_norm(tape.gradient(eager_loss, variables))
    optimizer = optimizers.build_optimizer(params.train.optimizer, 0.01)
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def train_step(features, labels):
        with tf.GradientTape() as tape:
            loss = model_fn(model, features, labels, TRAIN)["total_loss"]
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return loss, tf.linalg.global_norm(grads)

    assert "convolution(" in train_step.experimental_get_compiler_ir(features, labels)(stage="hlo")
    loss, norm = train_step(features, labels)
    assert float(loss) == pytest.approx(float(eager_loss), rel=1e-4)
    assert float(norm) == pytest.approx(float(eager_norm), rel=1e-3)
    second, _ = train_step(features, labels)
    assert float(second) != float(loss)
    assert train_step.experimental_get_tracing_count() == 1

    eval_features, eval_labels = batches[1]

    def eval_step(features, labels):
        outputs = model_fn(model, features, labels, EVAL)
        return outputs["predictions"], outputs["losses"]

    xla_predictions, xla_losses = tf.function(eval_step, jit_compile=True)(
        eval_features, eval_labels
    )
    predictions, losses = eval_step(eval_features, eval_labels)
    np.testing.assert_allclose(xla_predictions["logits"], predictions["logits"], atol=1e-4)
    assert float(xla_losses["model_loss"]) == pytest.approx(float(losses["model_loss"]), rel=1e-4)


def test_accuracy_over_the_whole_eval_set_equals_numpy(tiny_classification_shapes):
    """Batches of 4 over 10 images (2 padded): the evaluator sees exactly the 10 real ones."""
    params = tiny_params(tiny_classification_shapes, **{"eval.eval_batch_size": 4})
    model_fn, model = _build(params)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    metrics = evaluation.Evaluation(strategy, model_fn, model, 4).run()
    logits, classes = [], []
    for features, labels in model_fn.input_fn(EVAL)(None):
        valid = features["valid"].numpy()
        logits.append(model(features["images"], training=False)["logits"].numpy()[valid])
        classes.append(labels["classes"].numpy()[valid])
    logits, classes = np.concatenate(logits), np.concatenate(classes)
    assert len(classes) == 10
    order = np.argsort(-logits, axis=1)
    assert metrics["top_1_accuracy"] == pytest.approx(np.mean(order[:, 0] == classes))
    assert metrics["top_5_accuracy"] == 1.0  # 4 classes: every label is in the top 5
    assert np.isfinite(metrics["losses/model_loss"])


def test_mixed_bfloat16_policy(tiny_classification_shapes, batches):
    params = tiny_params(tiny_classification_shapes, **{"classification_head.aggregation": "top"})
    keras.utils.set_random_seed(0)
    model_fn = model_fn_factory.model_fn_from_params(params)
    model_fn.dtype_policy = keras.DTypePolicy("mixed_bfloat16")
    model = model_fn.build_model()
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    assert model.head.compute_dtype == "bfloat16"
    features, labels = batches[0]
    with tf.GradientTape() as tape:
        loss = model_fn(model, features, labels, TRAIN)["total_loss"]
    grads = tape.gradient(loss, model.trainable_variables)
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    assert all(g is not None and g.dtype == tf.float32 for g in grads)
