"""SegmentationModelFn on the tiny segmentation shapes dataset: the model-fn contract,
XLA-compiled train and eval steps, padding kept out of the eval loss and the confusion
matrices, and mean IoU over the whole eval set (through the executor's evaluation pass) equal
to a NumPy count over the predicted label maps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.configs import loader
from detection.core.modes import EVAL, PREDICT, TRAIN
from detection.executor import evaluation, optimizers
from detection.hyperparameters import ParamsError
from detection.model_fns import factory as model_fn_factory

BATCH = 2
NUM_CLASSES = 4  # background + circle, square, triangle
SIZE = 64


def tiny_params(paths, **override):
    """ResNet-10, 16-channel FPN P3-P5, head on P3 upsampled 2x."""
    tree = {
        "architecture": {"num_classes": NUM_CLASSES, "use_bfloat16": False, "max_level": 5},
        "resnet": {"resnet_depth": 10},
        "fpn": {"fpn_feat_dims": 16},
        "segmentation_head": {"upsample_factor": 2, "upsample_num_filters": 16},
        "segmentation_parser": {"output_size": [SIZE, SIZE]},
        "segmentation_loss": {"class_weights": [0.5, 1.0, 1.0, 1.0]},
        "train": {
            "train_batch_size": BATCH,
            "total_steps": 2,
            "frozen_variable_prefix": None,
            "train_file_pattern": paths["train_file_pattern"],
        },
        "eval": {
            "eval_batch_size": BATCH,
            "eval_samples": 8,  # the whole tiny val split
            "eval_file_pattern": paths["val_file_pattern"],
        },
    }
    for dotted, value in override.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return loader.load_params("segmentation", [], tree)


def _build(params, seed=0):
    keras.utils.set_random_seed(seed)
    model_fn = model_fn_factory.model_fn_from_params(params)
    return model_fn, model_fn.build_model()


@pytest.fixture(scope="module")
def batches(tiny_segmentation_shapes):
    model_fn = model_fn_factory.model_fn_from_params(tiny_params(tiny_segmentation_shapes))
    return next(iter(model_fn.input_fn(TRAIN)(None))), next(iter(model_fn.input_fn(EVAL)(None)))


def test_outputs_of_every_mode(tiny_segmentation_shapes, batches):
    model_fn, model = _build(tiny_params(tiny_segmentation_shapes))
    features, labels = batches[0]
    assert model(features["images"])["logits"].shape == (BATCH, 16, 16, NUM_CLASSES)
    train = model_fn(model, features, labels, TRAIN)
    assert train["total_loss"].shape == () and np.isfinite(float(train["total_loss"]))

    eval_features, eval_labels = batches[1]
    result = model_fn(model, eval_features, eval_labels, EVAL)
    matrices = result["predictions"]["confusion_matrix"].numpy()
    assert set(result["predictions"]) == {"confusion_matrix"}
    assert matrices.shape == (BATCH, NUM_CLASSES, NUM_CLASSES)
    # Every labelled pixel of each image is counted once (the val images fill 64x64).
    label_map = eval_labels["label_map"].numpy()
    np.testing.assert_array_equal(matrices.sum(axis=(1, 2)), (label_map != 255).sum(axis=(1, 2)))
    # Rows are the groundtruth classes.
    for c in range(NUM_CLASSES):
        np.testing.assert_array_equal(matrices[:, c].sum(-1), (label_map == c).sum(axis=(1, 2)))
    predict = model_fn(model, eval_features, None, PREDICT)["predictions"]
    assert predict["classes"].shape == (BATCH, SIZE, SIZE) and predict["classes"].dtype == tf.int32
    # The predicted map's classes are the columns of the confusion matrix.
    classes = predict["classes"].numpy()
    for c in range(NUM_CLASSES):
        counted = (classes == c) & (label_map != 255)
        np.testing.assert_array_equal(matrices[:, :, c].sum(-1), counted.sum(axis=(1, 2)))
    assert set(result["losses"]) == {"model_loss"}


def test_padded_images_do_not_count(tiny_segmentation_shapes):
    """8 val images in batches of 3: the last batch holds 2 images and 1 padding entry."""
    params = tiny_params(tiny_segmentation_shapes, **{"eval.eval_batch_size": 3})
    model_fn, model = _build(params)
    features, labels = list(model_fn.input_fn(EVAL)(None))[-1]
    np.testing.assert_array_equal(features["valid"], [True, True, False])
    padded = model_fn(model, features, labels, EVAL)
    assert padded["predictions"]["confusion_matrix"].numpy()[2].sum() == 0
    real_features = {k: v[:2] for k, v in features.items() if k != "valid"}
    real = model_fn(model, real_features, {"label_map": labels["label_map"][:2]}, EVAL)
    loss = float(padded["losses"]["model_loss"])
    assert loss == pytest.approx(float(real["losses"]["model_loss"]), rel=1e-5)


def test_train_and_eval_steps_compile_with_xla(tiny_segmentation_shapes, batches):
    params = tiny_params(tiny_segmentation_shapes)
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

    loss, norm = train_step(features, labels)
    assert float(loss) == pytest.approx(float(eager_loss), rel=1e-4)
    assert float(norm) == pytest.approx(float(eager_norm), rel=1e-3)
    assert train_step.experimental_get_tracing_count() == 1

    eval_features, eval_labels = batches[1]

    def eval_step(features, labels):
        outputs = model_fn(model, features, labels, EVAL)
        return outputs["predictions"], outputs["losses"]

    compiled = tf.function(eval_step, jit_compile=True)
    assert "convolution(" in compiled.experimental_get_compiler_ir(eval_features, eval_labels)(
        stage="hlo"
    )
    xla_predictions, xla_losses = compiled(eval_features, eval_labels)
    predictions, losses = eval_step(eval_features, eval_labels)
    # Arg-max ties may flip on a few pixels between XLA and TF kernels; the counts agree.
    difference = np.abs(
        xla_predictions["confusion_matrix"].numpy() - predictions["confusion_matrix"].numpy()
    )
    assert difference.sum() <= 0.001 * BATCH * SIZE * SIZE
    assert float(xla_losses["model_loss"]) == pytest.approx(float(losses["model_loss"]), rel=1e-4)


def test_mean_iou_over_the_whole_eval_set_equals_numpy(tiny_segmentation_shapes):
    params = tiny_params(tiny_segmentation_shapes, **{"eval.eval_batch_size": 3})
    model_fn, model = _build(params)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    metrics = evaluation.Evaluation(strategy, model_fn, model, 3).run()
    truth, predicted = [], []
    for features, labels in model_fn.input_fn(EVAL)(None):
        valid = features["valid"].numpy()
        classes = model_fn(model, features, None, PREDICT)["predictions"]["classes"].numpy()
        truth.append(labels["label_map"].numpy()[valid])
        predicted.append(classes[valid])
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    assert len(truth) == 8
    keep = truth != 255
    ious = []
    for c in range(NUM_CLASSES):
        union = np.sum(((truth == c) | (predicted == c)) & keep)
        if union:
            ious.append(np.sum((truth == c) & (predicted == c) & keep) / union)
    assert metrics["miou"] == pytest.approx(np.mean(ious))
    assert metrics["pixel_accuracy"] == pytest.approx(np.mean(truth[keep] == predicted[keep]))
    assert np.isfinite(metrics["losses/model_loss"])


def test_aspp_and_pyramid_fusion_plug_in(tiny_segmentation_shapes, batches):
    params = tiny_params(
        tiny_segmentation_shapes,
        **{"architecture.use_aspp": True, "architecture.use_pyramid_fusion": True},
    )
    model_fn, model = _build(params)
    assert model.aspp is not None
    features, labels = batches[0]
    assert np.isfinite(float(model_fn(model, features, labels, TRAIN)["total_loss"]))


@pytest.mark.parametrize(
    "override, key",
    [
        ({"segmentation_head.level": 6}, "segmentation_head.level=6"),
        ({"segmentation_loss.class_weights": [1.0]}, "segmentation_loss.class_weights"),
    ],
)
def test_bad_params_name_their_key(tiny_segmentation_shapes, override, key):
    with pytest.raises(ParamsError, match=key):
        model_fn = model_fn_factory.model_fn_from_params(
            tiny_params(tiny_segmentation_shapes, **override)
        )
        model_fn.build_model()
