"""ShapeMaskModelFn end to end on the tiny shapes dataset: the model fn contract, XLA-compiled
train and eval steps, the partially supervised setting (masks trained on circles and squares,
evaluated on triangles), the config restrictions and the prior file checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from train_batches import first_batch_with_objects

from detection.configs import loader
from detection.core.modes import EVAL, PREDICT, TRAIN
from detection.executor import optimizers
from detection.hyperparameters import ParamsError
from detection.model_fns import factory as model_fn_factory
from detection.tools import make_shape_priors

BATCH = 2
MAX_TOTAL_SIZE = 6
IMAGE_SIZE = 64
K = 3  # num_sampled_masks
S = 8  # mask_crop_size
U = 2  # upsample_factor
CLUSTERS = 2


def tiny_params(paths, priors="", **extra):
    """ResNet-10, 16-channel FPN P3-P5 and head, 8-channel mask heads, 64 px, 4 classes."""
    override = {
        "architecture": {"min_level": 3, "max_level": 5, "num_classes": 4, "use_bfloat16": False},
        "resnet": {"resnet_depth": 10},
        "fpn": {"fpn_feat_dims": 16},
        "retinanet_head": {"num_convs": 1, "num_filters": 16},
        "anchor": {"num_scales": 2, "anchor_size": 3.0},
        "shapemask_parser": {
            "output_size": [IMAGE_SIZE, IMAGE_SIZE],
            "max_num_instances": 8,
            "num_sampled_masks": K,
            "mask_crop_size": S,
            "upsample_factor": U,
            "mask_min_level": 3,
            "mask_max_level": 4,
        },
        "shapemask_head": {
            "mask_crop_size": S,
            "upsample_factor": U,
            "num_downsample_channels": 8,
            "num_convs": 1,
            "shape_prior_path": priors,
        },
        "train": {
            "train_batch_size": BATCH,
            "total_steps": 2,
            "iterations_per_loop": 2,
            "train_dataset_type": "tfrecord",
            "train_file_pattern": paths["train_file_pattern"],
        },
        "eval": {
            "eval_batch_size": BATCH,
            "eval_dataset_type": "tfrecord",
            "eval_file_pattern": paths["val_file_pattern"],
            "val_json_file": paths["val_annotations"],
        },
        # Threshold 0: an untrained head still gives K full detections per image.
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
    return loader.load_params("shapemask", [], override)


@pytest.fixture(scope="module")
def priors(tiny_shapes, tmp_path_factory):
    """Per-class [4, 2, 8, 8] and class-agnostic (circles and squares only) prior files."""
    root = tmp_path_factory.mktemp("priors")
    paths = {"per_class": str(root / "per_class.npy"), "agnostic": str(root / "agnostic.npy")}
    common = [
        f"--file_pattern={tiny_shapes['train_file_pattern']}",
        "--num_classes=4",
        f"--num_clusters={CLUSTERS}",
        f"--prior_size={S}",
    ]
    assert make_shape_priors.main(common + [f"--output_path={paths['per_class']}"]) == 0
    argv = common + [f"--output_path={paths['agnostic']}", "--class_agnostic", "--classes=1,2"]
    assert make_shape_priors.main(argv) == 0
    return paths


@pytest.fixture(scope="module")
def batches(tiny_shapes):
    """One train batch and one eval batch from the real input pipelines.

    The train batch is the first whose every image keeps a sampled instance after
    augmentation (shapes images hold 0-4 objects, and scale jitter can crop them out), so that
    every loss is active whatever seed earlier tests left behind.
    """
    model_fn = model_fn_factory.model_fn_from_params(tiny_params(tiny_shapes))
    train = first_batch_with_objects(
        model_fn.input_fn(TRAIN)(None),
        lambda labels: np.sum(labels["mask_is_valid"].numpy(), axis=1),
        "a sampled instance",
    )
    evaluation = next(iter(model_fn.input_fn(EVAL)(None)))
    return train, evaluation


def _build(params, seed=0):
    keras.utils.set_random_seed(seed)
    model_fn = model_fn_factory.model_fn_from_params(params)
    return model_fn, model_fn.build_model()


LOSS_NAMES = {"cls_loss", "box_loss", "shape_prior_loss", "coarse_mask_loss", "fine_mask_loss"}


def test_train_outputs_are_the_weighted_sum_of_finite_losses(tiny_shapes, priors, batches):
    params = tiny_params(tiny_shapes, priors["per_class"])
    model_fn, model = _build(params)
    features, labels = batches[0]
    outputs = model_fn(model, features, labels, TRAIN)
    assert set(outputs) == {"total_loss", "losses"} and set(outputs["losses"]) == LOSS_NAMES
    losses = {k: float(v) for k, v in outputs["losses"].items()}
    assert all(np.isfinite(v) and v > 0 for v in losses.values()), losses
    expected = (
        losses["cls_loss"]
        + params.retinanet_loss.box_loss_weight * losses["box_loss"]
        + params.shapemask_loss.shape_prior_loss_weight * losses["shape_prior_loss"]
        + params.shapemask_loss.coarse_mask_loss_weight * losses["coarse_mask_loss"]
        + params.shapemask_loss.fine_mask_loss_weight * losses["fine_mask_loss"]
    )
    assert float(outputs["total_loss"]) == pytest.approx(expected, rel=1e-5)
    # Every head gets a gradient: the prior head's classifier through the prior loss, the mask
    # heads through theirs, the backbone through all.
    with tf.GradientTape() as tape:
        loss = model_fn(model, features, labels, TRAIN)["total_loss"]
    grads = dict(
        zip(
            (v.path for v in model.trainable_variables),
            tape.gradient(loss, model.trainable_variables),
        )
    )
    for part in ("shape_prior_head", "coarse_mask_head", "fine_mask_head", "retinanet_head"):
        assert any(
            g is not None and np.any(g.numpy() != 0) for p, g in grads.items() if part in p
        ), part


def test_eval_predictions_have_masks_over_outer_boxes(tiny_shapes, priors, batches):
    params = tiny_params(tiny_shapes, priors["per_class"])
    model_fn, model = _build(params)
    features, labels = batches[1]
    outputs = model_fn(model, features, labels, EVAL)
    predictions = {k: v.numpy() for k, v in outputs["predictions"].items()}
    assert set(outputs["losses"]) == {"cls_loss", "box_loss"}
    assert predictions["detection_masks"].shape == (BATCH, MAX_TOTAL_SIZE, S * U, S * U)
    assert predictions["detection_masks"].dtype == np.float32
    assert np.all((predictions["detection_masks"] >= 0) & (predictions["detection_masks"] <= 1))
    boxes = predictions["detection_boxes"].astype(np.float64)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = (boxes[..., 2:] - boxes[..., :2]) * 1.25 / 2
    outer = np.clip(np.concatenate([centre - half, centre + half], -1), 0, IMAGE_SIZE)
    np.testing.assert_allclose(predictions["detection_outer_boxes"], outer, atol=1e-4)
    np.testing.assert_array_equal(predictions["num_detections"], [MAX_TOTAL_SIZE] * BATCH)
    predict = model_fn(model, features, None, PREDICT)
    assert set(predict) == {"predictions"}
    np.testing.assert_allclose(
        predict["predictions"]["detection_masks"], predictions["detection_masks"], atol=1e-6
    )
    # The evaluator pastes and scores the masks.
    evaluator = model_fn.build_evaluator()
    evaluator.update(predictions, None)
    metrics = evaluator.evaluate()
    assert "mask_AP" in metrics and "AP" in metrics


def test_train_step_compiles_with_xla(tiny_shapes, priors, batches):
    params = tiny_params(tiny_shapes, priors["per_class"])
    model_fn, model = _build(params)
    features, labels = batches[0]
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        eager_loss = model_fn(model, features, labels, TRAIN)["total_loss"]
    eager_norm = tf.linalg.global_norm(tape.gradient(eager_loss, variables))
    optimizer = optimizers.build_optimizer(params.train.optimizer, 0.01)
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def step(features, labels):
        with tf.GradientTape() as tape:
            loss = model_fn(model, features, labels, TRAIN)["total_loss"]
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return loss, tf.linalg.global_norm(grads)

    hlo = step.experimental_get_compiler_ir(features, labels)(stage="hlo")
    assert "convolution(" in hlo
    loss, norm = step(features, labels)
    assert float(loss) == pytest.approx(float(eager_loss), rel=1e-4)
    assert float(norm) == pytest.approx(float(eager_norm), rel=1e-3)
    second, _ = step(features, labels)
    assert np.isfinite(float(second)) and float(second) != float(loss)
    assert step.experimental_get_tracing_count() == 1


def test_eval_step_compiles_with_xla(tiny_shapes, priors, batches):
    params = tiny_params(tiny_shapes, priors["per_class"])
    model_fn, model = _build(params)
    features, labels = batches[1]

    def eval_step(features, labels):
        outputs = model_fn(model, features, labels, EVAL)
        return outputs["predictions"], outputs["losses"]

    compiled = tf.function(eval_step, jit_compile=True)
    hlo = compiled.experimental_get_compiler_ir(features, labels)(stage="hlo")
    assert "convolution(" in hlo and "while(" in hlo
    xla, xla_losses = compiled(features, labels)
    eager, losses = eval_step(features, labels)
    np.testing.assert_array_equal(xla["detection_classes"], eager["detection_classes"])
    np.testing.assert_allclose(xla["detection_boxes"], eager["detection_boxes"], atol=1e-3)
    np.testing.assert_allclose(xla["detection_masks"], eager["detection_masks"], atol=1e-4)
    for name in losses:
        assert float(xla_losses[name]) == pytest.approx(float(losses[name]), rel=1e-4)


def test_partially_supervised_masks_train_on_two_classes_and_evaluate_on_the_third(
    tiny_shapes, priors
):
    """The shapes split: masks of circles (1) and squares (2) train, triangles (3) are novel.

    Class-agnostic mask heads and priors (clustered from circles and squares only), as the
    original's cross-category setting; boxes of every class still train and are evaluated.
    """
    params = tiny_params(
        tiny_shapes,
        priors["agnostic"],
        **{
            "shapemask_parser.mask_train_class": "1,2",
            "shapemask_head.use_category_for_mask": False,
            "eval.mask_eval_class": "3",
            "eval.per_category_metrics": True,
        },
    )
    model_fn, model = _build(params)
    dataset = iter(model_fn.input_fn(TRAIN)(None))
    for _ in range(20):
        features, labels = next(dataset)
        classes = labels["mask_classes"].numpy()
        if np.any(classes == 3) and np.any(classes != 3):
            break
    else:
        pytest.fail("no train batch with triangles and other shapes")
    np.testing.assert_array_equal(labels["mask_is_valid"], (classes != 3) & (classes > 0))
    outputs = model_fn(model, features, labels, TRAIN)["losses"]
    # Triangle targets do not reach the mask losses: inverting them changes nothing.
    triangles = (classes == 3)[..., None, None]
    changed = dict(labels)
    for key in ("mask_targets", "fine_mask_targets"):
        changed[key] = tf.where(triangles, 1.0 - labels[key], labels[key])
    again = model_fn(model, features, changed, TRAIN)["losses"]
    for name in ("shape_prior_loss", "coarse_mask_loss", "fine_mask_loss"):
        assert float(again[name]) == pytest.approx(float(outputs[name]), rel=1e-6), name
    # ...while circle targets do.
    circles = (classes == 1)[..., None, None]
    changed["mask_targets"] = tf.where(
        circles, 1.0 - labels["mask_targets"], labels["mask_targets"]
    )
    if np.any(classes == 1):
        moved = model_fn(model, features, changed, TRAIN)["losses"]
        assert float(moved["coarse_mask_loss"]) != pytest.approx(float(outputs["coarse_mask_loss"]))

    # Evaluation: box metrics of every class, mask metrics of triangles only.
    evaluator = model_fn.build_evaluator()
    for features, labels in model_fn.input_fn(EVAL)(None):
        predictions = model_fn(model, features, labels, EVAL)["predictions"]
        predictions = {k: v.numpy() for k, v in predictions.items()}
        predictions["valid"] = features["valid"].numpy()
        evaluator.update(predictions, None)
    metrics = evaluator.evaluate()
    assert {"AP_/circle", "AP_/square", "AP_/triangle", "mask_AP_/triangle"} <= set(metrics)
    assert "mask_AP_/circle" not in metrics and "mask_AP_/square" not in metrics
    assert metrics["mask_AP"] == metrics["mask_AP_/triangle"]


def test_restrictions_and_prior_files_are_checked(tiny_shapes, priors, tmp_path):
    with pytest.raises(ParamsError, match="shapemask_head.mask_crop_size=16 == shapemask_parser"):
        loader.load_params("shapemask", params_override="shapemask_head.mask_crop_size=16")
    with pytest.raises(ParamsError, match="shapemask_head.upsample_factor=2 == shapemask_parser"):
        loader.load_params("shapemask", params_override="shapemask_head.upsample_factor=2")
    with pytest.raises(ParamsError, match="shape_prior_path='/nonexistent/p.npy'"):
        _build(tiny_params(tiny_shapes, "/nonexistent/p.npy"))
    # Class-agnostic priors for per-class mask heads: the message names the file and shapes.
    with pytest.raises(ParamsError, match=r"\[4, num_clusters, 8, 8\].*\[1, 2, 8, 8\].*agnostic"):
        _build(tiny_params(tiny_shapes, priors["agnostic"]))
    with pytest.raises(ParamsError, match="mask_max_level=6 must lie within"):
        _build(tiny_params(tiny_shapes, **{"shapemask_parser.mask_max_level": 6}))
    with pytest.raises(ParamsError, match="architecture.parser='retinanet_parser'"):
        model_fn_factory.model_fn_from_params(
            tiny_params(tiny_shapes, **{"architecture.parser": "retinanet_parser"})
        )


def test_mixed_bfloat16_policy(tiny_shapes, priors, batches):
    params = tiny_params(tiny_shapes, priors["per_class"])
    keras.utils.set_random_seed(0)
    model_fn = model_fn_factory.model_fn_from_params(params)
    model_fn.dtype_policy = keras.DTypePolicy("mixed_bfloat16")
    model = model_fn.build_model()
    assert {v.dtype for v in model.variables} == {"float32"}
    assert model.fine_mask_head.compute_dtype == "bfloat16"
    features, labels = batches[0]
    with tf.GradientTape() as tape:
        loss = model_fn(model, features, labels, TRAIN)["total_loss"]
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(float(tf.linalg.global_norm(grads)))
    predictions = model_fn(model, *batches[1], EVAL)["predictions"]
    assert predictions["detection_masks"].dtype == tf.float32
