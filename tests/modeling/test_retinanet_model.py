"""RetinaNetModelFn end to end on the tiny shapes dataset: the model fn contract (train /
eval / predict outputs and static shapes), full XLA-compiled train and eval steps, and the
mixed_bfloat16 policy."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from train_batches import first_batch_with_objects

from detection.configs import loader
from detection.core.modes import EVAL, PREDICT, TRAIN
from detection.executor import optimizers
from detection.model_fns import factory as model_fn_factory

BATCH = 2
MAX_TOTAL_SIZE = 10
IMAGE_SIZE = 64


def tiny_params(paths, **extra):
    """ResNet-10, 16-channel FPN P3-P5 and head, 64 px, 4 classes (background + 3 shapes)."""
    override = {
        "architecture": {"min_level": 3, "max_level": 5, "num_classes": 4, "use_bfloat16": False},
        "resnet": {"resnet_depth": 10},
        "fpn": {"fpn_feat_dims": 16},
        "retinanet_head": {"num_convs": 1, "num_filters": 16},
        "anchor": {"num_scales": 2, "anchor_size": 3.0},
        "retinanet_parser": {"output_size": [IMAGE_SIZE, IMAGE_SIZE], "max_num_instances": 8},
        "train": {
            "train_batch_size": BATCH,
            "total_steps": 2,
            "iterations_per_loop": 2,
            "train_file_pattern": paths["train_file_pattern"],
        },
        "eval": {
            "eval_batch_size": BATCH,
            "eval_file_pattern": paths["val_file_pattern"],
            "val_json_file": paths["val_annotations"],
        },
        # Threshold 0: an untrained head scores every anchor near its 0.01 prior, and the
        # outputs must still be full detections for the shape and XLA comparisons.
        "postprocess": {
            "max_total_size": MAX_TOTAL_SIZE,
            "pre_nms_num_boxes": 50,
            "score_threshold": 0.0,
        },
    }
    for dotted, value in extra.items():
        node = override
        *parents, leaf = dotted.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return loader.load_params("retinanet", [], override)


@pytest.fixture(scope="module")
def batches(tiny_shapes):
    """One train batch and one eval batch from the real input pipelines.

    The train batch is the first with a positive anchor in every image (shapes images hold
    0-4 objects, and scale jitter can crop them out), so that the box loss is active and the
    loss can fall whatever seed earlier tests left behind (as in the Mask R-CNN and ShapeMask
    model tests).
    """
    model_fn = model_fn_factory.model_fn_from_params(tiny_params(tiny_shapes))
    train = first_batch_with_objects(
        model_fn.input_fn(TRAIN)(None), lambda labels: labels["num_positives"], "a positive anchor"
    )
    evaluation = next(iter(model_fn.input_fn(EVAL)(None)))
    return train, evaluation


def _build(params, seed=0):
    keras.utils.set_random_seed(seed)
    model_fn = model_fn_factory.model_fn_from_params(params)
    return model_fn, model_fn.build_model()


def test_train_outputs_are_finite_scalars(tiny_shapes, batches):
    params = tiny_params(tiny_shapes)
    model_fn, model = _build(params)
    features, labels = batches[0]
    outputs = model_fn(model, features, labels, TRAIN)
    assert set(outputs) == {"total_loss", "losses"}
    assert set(outputs["losses"]) == {"cls_loss", "box_loss"}
    values = [outputs["total_loss"], *outputs["losses"].values()]
    for value in values:
        assert value.shape == () and value.dtype == tf.float32
        assert np.isfinite(value.numpy())
    losses = {k: float(v) for k, v in outputs["losses"].items()}
    # The class loss is always active; the box loss wherever an anchor matched (a shuffled
    # batch whose jittered crops leave no anchor at IoU >= 0.5 has none).
    assert losses["cls_loss"] > 0
    assert (losses["box_loss"] > 0) == bool(np.sum(labels["num_positives"].numpy()) > 0)
    weight = params.retinanet_loss.box_loss_weight
    assert float(outputs["total_loss"]) == pytest.approx(
        losses["cls_loss"] + weight * losses["box_loss"], rel=1e-6
    )


def _assert_prediction_shapes(predictions, batch, k):
    expected = {
        "num_detections": ([batch], tf.int32),
        "detection_boxes": ([batch, k, 4], tf.float32),
        "detection_scores": ([batch, k], tf.float32),
        "detection_classes": ([batch, k], tf.int32),
        "source_id": ([batch], tf.int64),
        "image_info": ([batch, 4, 2], tf.float32),
    }
    assert set(predictions) == set(expected)
    for name, (shape, dtype) in expected.items():
        assert predictions[name].shape.as_list() == shape, name
        assert predictions[name].dtype == dtype, name


def test_eval_and_predict_outputs_have_static_shapes(tiny_shapes, batches):
    params = tiny_params(tiny_shapes)
    model_fn, model = _build(params)
    features, labels = batches[1]
    outputs = model_fn(model, features, labels, EVAL)
    _assert_prediction_shapes(outputs["predictions"], BATCH, MAX_TOTAL_SIZE)
    assert set(outputs["losses"]) == {"cls_loss", "box_loss"}
    predictions = {k: v.numpy() for k, v in outputs["predictions"].items()}
    np.testing.assert_array_equal(predictions["source_id"], features["source_ids"].numpy())
    np.testing.assert_array_equal(predictions["image_info"], features["image_info"].numpy())
    # score_threshold 0: every image fills its K slots with valid detections.
    np.testing.assert_array_equal(predictions["num_detections"], [MAX_TOTAL_SIZE] * BATCH)
    assert np.all(np.diff(predictions["detection_scores"], axis=1) <= 0)
    assert set(np.unique(predictions["detection_classes"])) <= {1, 2, 3}
    boxes = predictions["detection_boxes"]
    assert np.all(boxes >= 0) and np.all(boxes <= IMAGE_SIZE)
    assert np.all(boxes[..., 2:] >= boxes[..., :2])

    # Predict needs no labels and returns no losses; neither does eval with skip_eval_loss.
    predict = model_fn(model, features, None, PREDICT)
    assert set(predict) == {"predictions"}
    _assert_prediction_shapes(predict["predictions"], BATCH, MAX_TOTAL_SIZE)
    np.testing.assert_allclose(
        predict["predictions"]["detection_scores"], predictions["detection_scores"], rtol=1e-6
    )
    skip_fn = model_fn_factory.model_fn_from_params(
        tiny_params(tiny_shapes, **{"eval.skip_eval_loss": True})
    )
    assert set(skip_fn(model, features, labels, EVAL)) == {"predictions"}


def test_padded_examples_do_not_enter_eval_losses(tiny_shapes):
    """8 val images in batches of 3: the last batch holds 2 images and 1 padding entry."""
    params = tiny_params(tiny_shapes, **{"eval.eval_batch_size": 3})
    model_fn, model = _build(params)
    batches = list(model_fn.input_fn(EVAL)(None))
    features, labels = batches[-1]
    np.testing.assert_array_equal(features["valid"], [True, True, False])
    padded = model_fn(model, features, labels, EVAL)["losses"]

    def first_two(structure):
        return tf.nest.map_structure(lambda t: t[:2], structure)

    real_features = {k: v for k, v in first_two(features).items() if k != "valid"}
    real = model_fn(model, real_features, first_two(labels), EVAL)["losses"]
    for name in ("cls_loss", "box_loss"):
        assert float(padded[name]) == pytest.approx(float(real[name]), rel=1e-5), name


def _xla_train_step(model_fn, model, optimizer):
    variables = model.trainable_variables

    @tf.function(jit_compile=True)
    def step(features, labels):
        with tf.GradientTape() as tape:
            loss = model_fn(model, features, labels, TRAIN)["total_loss"]
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return loss, tf.linalg.global_norm(grads)

    return step


def test_full_train_step_compiles_with_xla(tiny_shapes, batches):
    params = tiny_params(tiny_shapes)
    model_fn, model = _build(params)
    features, labels = batches[0]
    variables = model.trainable_variables
    # Loss and gradient before any update, without XLA: the compiled step must match them.
    with tf.GradientTape() as tape:
        eager_loss = model_fn(model, features, labels, TRAIN)["total_loss"]
    eager_grads = [g.numpy() for g in tape.gradient(eager_loss, variables)]
    learning_rate = 0.01
    optimizer = optimizers.build_optimizer(params.train.optimizer, learning_rate)
    optimizer.build(variables)
    step = _xla_train_step(model_fn, model, optimizer)
    hlo = step.experimental_get_compiler_ir(features, labels)(stage="hlo")
    assert "convolution(" in hlo
    before = [v.numpy() for v in variables]
    first_loss, grad_norm = step(features, labels)
    assert float(first_loss) == pytest.approx(float(eager_loss), rel=1e-4)
    assert float(grad_norm) == pytest.approx(
        float(np.sqrt(sum(np.sum(g**2) for g in eager_grads))), rel=1e-3
    )
    assert int(optimizer.iterations.numpy()) == 1
    # First momentum step: w <- w - lr * g for every variable (the box head's batch norm of
    # a level without positive anchors has g = 0 and stays put).
    for old, grad, variable in zip(before, eager_grads, variables):
        np.testing.assert_allclose(
            variable.numpy(), old - learning_rate * grad, atol=2e-6, err_msg=variable.path
        )
    assert sum(np.any(g != 0) for g in eager_grads) > 0.8 * len(variables)
    second_loss, _ = step(features, labels)
    assert np.isfinite(float(second_loss)) and float(second_loss) != float(first_loss)
    # One compiled program, reused (the step's shapes are static).
    assert step.experimental_get_tracing_count() == 1


def test_eval_step_with_nms_compiles_with_xla(tiny_shapes, batches):
    params = tiny_params(tiny_shapes)
    model_fn, model = _build(params)
    features, labels = batches[1]

    def eval_step(features, labels):
        outputs = model_fn(model, features, labels, EVAL)
        return outputs["predictions"], outputs["losses"]

    compiled = tf.function(eval_step, jit_compile=True)
    hlo = compiled.experimental_get_compiler_ir(features, labels)(stage="hlo")
    assert "convolution(" in hlo and "while(" in hlo  # The network and the NMS loop.
    xla_predictions, xla_losses = compiled(features, labels)
    _assert_prediction_shapes(xla_predictions, BATCH, MAX_TOTAL_SIZE)
    predictions, losses = eval_step(features, labels)
    np.testing.assert_array_equal(xla_predictions["num_detections"], predictions["num_detections"])
    np.testing.assert_allclose(
        xla_predictions["detection_scores"], predictions["detection_scores"], atol=1e-5
    )
    np.testing.assert_allclose(
        xla_predictions["detection_boxes"], predictions["detection_boxes"], atol=1e-3
    )
    np.testing.assert_array_equal(
        xla_predictions["detection_classes"], predictions["detection_classes"]
    )
    for name in losses:
        assert float(xla_losses[name]) == pytest.approx(float(losses[name]), rel=1e-4)


def test_mixed_bfloat16_policy(tiny_shapes, batches):
    params = tiny_params(tiny_shapes)
    keras.utils.set_random_seed(0)
    model_fn = model_fn_factory.model_fn_from_params(params)
    model_fn.dtype_policy = keras.DTypePolicy("mixed_bfloat16")
    model = model_fn.build_model()
    # Variables stay float32; the convolutions compute in bfloat16.
    assert {v.dtype for v in model.variables} == {"float32"}
    assert model.backbone.compute_dtype == "bfloat16"
    assert model.head.compute_dtype == "bfloat16"
    features, labels = batches[0]
    raw = model(features["images"], training=False)
    for outputs in raw.values():
        assert {t.dtype for t in outputs.values()} == {tf.float32}
    train = model_fn(model, features, labels, TRAIN)
    assert train["total_loss"].dtype == tf.float32 and np.isfinite(float(train["total_loss"]))
    with tf.GradientTape() as tape:
        loss = model_fn(model, features, labels, TRAIN)["total_loss"]
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and g.dtype == tf.float32 for g in grads)
    assert np.isfinite(float(tf.linalg.global_norm(grads)))
    eval_features, eval_labels = batches[1]
    predictions = model_fn(model, eval_features, eval_labels, EVAL)["predictions"]
    _assert_prediction_shapes(predictions, BATCH, MAX_TOTAL_SIZE)


def test_bfloat16_steps_track_float32(tiny_shapes, batches):
    """Four momentum-SGD steps from one initialization: mixed bfloat16 stays within 3 % of
    float32 at every step (bfloat16 keeps 8 mantissa bits: ~0.4 % per rounding), and both
    make the loss fall."""
    params = tiny_params(tiny_shapes)
    features, labels = batches[0]
    curves = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.utils.set_random_seed(0)
        model_fn = model_fn_factory.model_fn_from_params(params)
        model_fn.dtype_policy = keras.DTypePolicy(policy)
        model = model_fn.build_model()
        optimizer = optimizers.build_optimizer({"type": "momentum", "momentum": 0.9}, 0.004)
        variables = model.trainable_variables

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = model_fn(model, features, labels, TRAIN)["total_loss"]
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        curves[policy] = np.array([float(step()) for _ in range(4)])
    full, mixed = curves["float32"], curves["mixed_bfloat16"]
    np.testing.assert_allclose(mixed, full, rtol=0.03)
    assert full[-1] < full[0] and mixed[-1] < mixed[0]
    assert not np.array_equal(mixed, full)  # Really computed in another precision.
