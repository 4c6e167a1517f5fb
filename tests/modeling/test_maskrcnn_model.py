"""(Cascade) Mask R-CNN / Faster R-CNN model fn end to end on the tiny shapes dataset: the
model fn contract (train / eval / predict outputs, static shapes), XLA-compiled train and eval
steps, the cascade and the mixed_bfloat16 policy.

The tiny params (maskrcnn_tiny.py) take every candidate ROI, so eager and XLA runs compare
exactly.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from maskrcnn_tiny import (
    BATCH,
    CASCADE,
    IMAGE_SIZE,
    MASK_SIZE,
    MAX_DETECTIONS,
    NUM_CLASSES,
    SAMPLES,
    tiny_params,
)
from train_batches import first_batch_with_objects

from detection.core.modes import EVAL, PREDICT, TRAIN
from detection.executor import optimizers
from detection.hyperparameters import ParamsError
from detection.model_fns import factory as model_fn_factory


@pytest.fixture(scope="module")
def batches(tiny_shapes):
    """One train batch and one eval batch from the real input pipelines.

    The train batch is the first whose every image keeps an object after augmentation (shapes
    images hold 0-4 objects, and scale jitter can crop them out), so that every loss and
    every head's gradient is active whatever seed earlier tests left behind.
    """
    model_fn = model_fn_factory.model_fn_from_params(tiny_params(tiny_shapes))
    train = first_batch_with_objects(
        model_fn.input_fn(TRAIN)(None),
        lambda labels: np.sum(labels["gt_classes"].numpy() > 0, axis=1),
        "an object",
    )
    evaluation = next(iter(model_fn.input_fn(EVAL)(None)))
    return train, evaluation


def _build(params, seed=0):
    keras.utils.set_random_seed(seed)
    model_fn = model_fn_factory.model_fn_from_params(params)
    return model_fn, model_fn.build_model()


LOSSES = {"rpn_score_loss", "rpn_box_loss", "fast_rcnn_class_loss", "fast_rcnn_box_loss"}


@pytest.mark.parametrize(
    "model, extra, names",
    [
        ("mask_rcnn", {}, LOSSES | {"mask_loss"}),
        ("mask_rcnn", {"architecture.include_mask": False}, LOSSES),
        ("cascade_mask_rcnn", CASCADE, LOSSES | {"mask_loss"}),
    ],
    ids=["mask_rcnn", "faster_rcnn", "cascade"],
)
def test_train_outputs_are_finite_scalars(tiny_shapes, batches, model, extra, names):
    model_fn, model = _build(tiny_params(tiny_shapes, model, **extra))
    features, labels = batches[0]
    outputs = model_fn(model, features, labels, TRAIN)
    assert set(outputs) == {"total_loss", "losses"}
    assert set(outputs["losses"]) == names
    for value in [outputs["total_loss"], *outputs["losses"].values()]:
        assert value.shape == () and value.dtype == tf.float32 and np.isfinite(value.numpy())
    losses = {k: float(v) for k, v in outputs["losses"].items()}
    # Shapes images always have objects: every loss is active.
    assert all(v > 0 for v in losses.values()), losses
    assert float(outputs["total_loss"]) == pytest.approx(sum(losses.values()), rel=1e-6)


def _assert_prediction_shapes(predictions, include_mask=True):
    expected = {
        "num_detections": ([BATCH], tf.int32),
        "detection_boxes": ([BATCH, MAX_DETECTIONS, 4], tf.float32),
        "detection_scores": ([BATCH, MAX_DETECTIONS], tf.float32),
        "detection_classes": ([BATCH, MAX_DETECTIONS], tf.int32),
        "source_id": ([BATCH], tf.int64),
        "image_info": ([BATCH, 4, 2], tf.float32),
    }
    if include_mask:
        expected["detection_masks"] = ([BATCH, MAX_DETECTIONS, MASK_SIZE, MASK_SIZE], tf.float32)
    assert set(predictions) == set(expected)
    for name, (shape, dtype) in expected.items():
        assert predictions[name].shape.as_list() == shape, name
        assert predictions[name].dtype == dtype, name


def test_eval_and_predict_outputs_have_static_shapes(tiny_shapes, batches):
    model_fn, model = _build(tiny_params(tiny_shapes))
    features, labels = batches[1]
    outputs = model_fn(model, features, labels, EVAL)
    assert set(outputs) == {"predictions"}  # Mask R-CNN evaluation has no losses.
    _assert_prediction_shapes(outputs["predictions"])
    predictions = {k: v.numpy() for k, v in outputs["predictions"].items()}
    np.testing.assert_array_equal(predictions["source_id"], features["source_ids"].numpy())
    np.testing.assert_array_equal(predictions["num_detections"], [MAX_DETECTIONS] * BATCH)
    assert np.all(np.diff(predictions["detection_scores"], axis=1) <= 0)
    assert set(np.unique(predictions["detection_classes"])) <= {1, 2, 3}
    boxes = predictions["detection_boxes"]
    assert np.all(boxes >= 0) and np.all(boxes <= IMAGE_SIZE)
    masks = predictions["detection_masks"]
    assert np.all((masks > 0) & (masks < 1))
    predict = model_fn(model, features, None, PREDICT)
    _assert_prediction_shapes(predict["predictions"])
    np.testing.assert_allclose(
        predict["predictions"]["detection_masks"], masks, rtol=1e-5, atol=1e-6
    )


def test_faster_rcnn_predicts_no_masks(tiny_shapes, batches):
    model_fn, model = _build(tiny_params(tiny_shapes, **{"architecture.include_mask": False}))
    assert model.mask_head is None
    assert not [v for v in model.variables if "mask_head" in v.path]
    predictions = model_fn(model, batches[1][0], None, PREDICT)["predictions"]
    _assert_prediction_shapes(predictions, include_mask=False)


def _xla_train_step(model_fn, model, optimizer):
    variables = model.trainable_variables

    @tf.function(jit_compile=True)
    def step(features, labels):
        with tf.GradientTape() as tape:
            outputs = model_fn(model, features, labels, TRAIN)
        grads = tape.gradient(outputs["total_loss"], variables)
        optimizer.apply(grads, variables)
        return outputs, tf.linalg.global_norm(grads)

    return step


@pytest.mark.parametrize("model, extra", [("mask_rcnn", {}), ("cascade_mask_rcnn", CASCADE)])
def test_full_train_step_compiles_with_xla(tiny_shapes, batches, model, extra):
    params = tiny_params(tiny_shapes, model, **extra)
    model_fn, network = _build(params)
    features, labels = batches[0]
    variables = network.trainable_variables
    with tf.GradientTape() as tape:
        eager = model_fn(network, features, labels, TRAIN)
    eager_grads = tape.gradient(eager["total_loss"], variables)
    optimizer = optimizers.build_optimizer(params.train.optimizer, 0.01)
    optimizer.build(variables)
    step = _xla_train_step(model_fn, network, optimizer)
    hlo = step.experimental_get_compiler_ir(features, labels)(stage="hlo")
    assert "convolution(" in hlo
    compiled, grad_norm = step(features, labels)
    for name, value in eager["losses"].items():
        assert float(compiled["losses"][name]) == pytest.approx(float(value), rel=1e-3), name
    assert float(grad_norm) == pytest.approx(float(tf.linalg.global_norm(eager_grads)), rel=1e-3)
    # Every part learns: the RPN, each stage's box head, the mask head, the backbone.
    for part in ("rpn_head", "frcnn_layer_0", "mask_head", "resnet", "fpn"):
        grads = [g for v, g in zip(variables, eager_grads) if part in v.path]
        assert grads and any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads), part
    if model == "cascade_mask_rcnn":
        for stage in (1, 2):
            grads = [g for v, g in zip(variables, eager_grads) if f"frcnn_layer_{stage}" in v.path]
            assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads), stage
    second, _ = step(features, labels)
    assert np.isfinite(float(second["total_loss"]))
    assert step.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("model, extra", [("mask_rcnn", {}), ("cascade_mask_rcnn", CASCADE)])
def test_eval_step_compiles_with_xla(tiny_shapes, batches, model, extra):
    model_fn, network = _build(tiny_params(tiny_shapes, model, **extra))
    features, labels = batches[1]

    def eval_step(features, labels):
        return model_fn(network, features, labels, EVAL)["predictions"]

    compiled = tf.function(eval_step, jit_compile=True)
    hlo = compiled.experimental_get_compiler_ir(features, labels)(stage="hlo")
    assert "convolution(" in hlo
    xla = compiled(features, labels)
    _assert_prediction_shapes(xla)
    eager = eval_step(features, labels)
    np.testing.assert_array_equal(xla["num_detections"], eager["num_detections"])
    np.testing.assert_array_equal(xla["detection_classes"], eager["detection_classes"])
    np.testing.assert_allclose(xla["detection_scores"], eager["detection_scores"], atol=1e-5)
    np.testing.assert_allclose(xla["detection_boxes"], eager["detection_boxes"], atol=1e-3)
    np.testing.assert_allclose(xla["detection_masks"], eager["detection_masks"], atol=1e-4)


def _iou_np(boxes, gt):
    """[n, m] IoU of yxyx boxes by brute force."""
    out = np.zeros((len(boxes), len(gt)))
    for i, a in enumerate(boxes):
        for j, g in enumerate(gt):
            h = max(0.0, min(a[2], g[2]) - max(a[0], g[0]))
            w = max(0.0, min(a[3], g[3]) - max(a[1], g[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (g[2] - g[0]) * (g[3] - g[1]) - h * w
            out[i, j] = h * w / union if union > 0 else 0.0
    return out


def test_cascade_stages_and_class_ensemble(tiny_shapes, batches):
    params = tiny_params(tiny_shapes, "cascade_mask_rcnn", **CASCADE)
    model_fn, network = _build(params)
    assert [h.name for h in network.box_heads] == [f"frcnn_layer_{i}" for i in range(3)]
    features, labels = batches[0]
    inputs = dict(
        images=features["images"],
        image_info=features["image_info"],
        gt_boxes=labels["gt_boxes"],
        gt_classes=labels["gt_classes"],
        gt_masks=labels["gt_masks"],
    )
    stages = network(inputs, training=True)["stages"]
    assert len(stages) == 3
    for stage in stages:
        assert stage["rois"].shape == (BATCH, SAMPLES, 4)
        assert stage["class_outputs"].shape == (BATCH, SAMPLES, NUM_CLASSES)
    # Later stages relabel the refined boxes at their own threshold: foreground exactly
    # where the best IoU with a groundtruth box reaches it (NumPy IoU).
    gt_boxes = labels["gt_boxes"].numpy()
    for stage, threshold in zip(stages[1:], (0.6, 0.7)):
        rois = stage["rois"].numpy()
        valid = stage["valid"].numpy()
        for b in range(BATCH):
            gt = gt_boxes[b][labels["gt_classes"].numpy()[b] >= 0]
            # An image may have no groundtruth left (the pipeline's order is not fixed):
            # then no ROI reaches any threshold.
            best = np.max(_iou_np(rois[b], gt), axis=1, initial=0.0)
            foreground = stage["class_targets"].numpy()[b] > 0
            np.testing.assert_array_equal(foreground[valid[b]], best[valid[b]] >= threshold)
    ensemble_fn, ensemble = _build(
        tiny_params(
            tiny_shapes,
            "cascade_mask_rcnn",
            **CASCADE,
            **{"frcnn_head.cascade_class_ensemble": True},
        )
    )
    plain = model_fn(network, batches[1][0], None, PREDICT)["predictions"]
    mixed = ensemble_fn(ensemble, batches[1][0], None, PREDICT)["predictions"]
    # Same weights (same seed), different scoring: the ensemble changes the scores.
    assert not np.allclose(plain["detection_scores"], mixed["detection_scores"])


def test_cascade_thresholds_need_the_cascade_type(tiny_shapes):
    with pytest.raises(ParamsError, match="needs type cascade_mask_rcnn"):
        model_fn_factory.model_fn_from_params(tiny_params(tiny_shapes, **CASCADE))
    with pytest.raises(ParamsError, match="cascade_iou_thresholds"):
        model_fn_factory.model_fn_from_params(
            tiny_params(
                tiny_shapes, "cascade_mask_rcnn", **{"roi_sampling.cascade_iou_thresholds": [1.5]}
            )
        )


def test_mixed_bfloat16_policy(tiny_shapes, batches):
    params = tiny_params(tiny_shapes)
    keras.utils.set_random_seed(0)
    model_fn = model_fn_factory.model_fn_from_params(params)
    model_fn.dtype_policy = keras.DTypePolicy("mixed_bfloat16")
    model = model_fn.build_model()
    assert {v.dtype for v in model.variables} == {"float32"}
    assert model.backbone.compute_dtype == "bfloat16"
    assert model.mask_head.compute_dtype == "bfloat16"
    features, labels = batches[0]
    with tf.GradientTape() as tape:
        outputs = model_fn(model, features, labels, TRAIN)
    assert outputs["total_loss"].dtype == tf.float32
    assert np.isfinite(float(outputs["total_loss"]))
    grads = tape.gradient(outputs["total_loss"], model.trainable_variables)
    # Only ResNet's C5 (group4) is unused: the pyramid stops at P4 here.
    unused = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert unused and all("group4" in path for path in unused)
    assert all(g.dtype == tf.float32 for g in grads if g is not None)
    predictions = model_fn(model, batches[1][0], None, PREDICT)["predictions"]
    _assert_prediction_shapes(predictions)


def test_padded_eval_examples_are_harmless(tiny_shapes):
    """8 val images in batches of 3: the last batch holds 2 images and 1 padding entry. Its
    predictions are finite and the evaluator skips it (there are no eval losses)."""
    params = tiny_params(tiny_shapes, **{"eval.eval_batch_size": 3})
    model_fn, model = _build(params)
    features, labels = list(model_fn.input_fn(EVAL)(None))[-1]
    np.testing.assert_array_equal(features["valid"], [True, True, False])
    outputs = model_fn(model, features, labels, EVAL)
    assert set(outputs) == {"predictions"}
    predictions = {k: v.numpy() for k, v in outputs["predictions"].items()}
    for name, value in predictions.items():
        assert np.all(np.isfinite(value)), name
    evaluator = model_fn.build_evaluator()
    predictions["valid"] = features["valid"].numpy()
    groundtruths = {k: v.numpy() for k, v in labels["groundtruths"].items()}
    evaluator.update(predictions, groundtruths)
    assert evaluator.num_images == 2
    metrics = evaluator.evaluate()
    assert "mask_AP" in metrics and 0.0 <= metrics["mask_AP"] <= 1.0
