"""Every model type registered in detection/model_fns/factory.py exports to a SavedModel.

Each is built tiny from the small params below, saved with its initial weights, exported with
a raw_image_tensor signature, loaded back with plain `tf.saved_model.load` and called; its
outputs (masks included) must equal the model fn's own PREDICT predictions of the same input. A new
model type fails here until it has a serving kind (detection/serving/factory.py), tiny params
below, and PREDICT outputs its kind can format.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from detection.configs import loader
from detection.core.modes import PREDICT
from detection.executor import checkpoints
from detection.model_fns import factory as model_fn_factory
from detection.serving import factory, input_types
from detection.serving import module as serving_module
from detection.serving.outputs import OutputOptions

SMALL_BACKBONE = {"resnet": {"resnet_depth": 10}, "fpn": {"fpn_feat_dims": 16}}
SMALL_DETECTION_POSTPROCESS = {"postprocess": {"max_total_size": 10, "pre_nms_num_boxes": 50}}
TWO_STAGE = {
    **SMALL_BACKBONE,
    **SMALL_DETECTION_POSTPROCESS,
    "architecture": {"num_classes": 4, "use_bfloat16": False},
    "maskrcnn_parser": {"output_size": [64, 64]},
    "rpn_head": {"num_filters": 16},
    "frcnn_head": {"num_filters": 16, "fc_dims": 32},
    "mrcnn_head": {"num_convs": 1, "num_filters": 16},
    "roi_proposal": {"test_rpn_pre_nms_top_k": 100, "test_rpn_post_nms_top_k": 20},
}
TINY_PARAMS = {
    "retinanet": {
        **SMALL_BACKBONE,
        **SMALL_DETECTION_POSTPROCESS,
        "architecture": {"min_level": 3, "max_level": 5, "num_classes": 4, "use_bfloat16": False},
        "retinanet_head": {"num_convs": 1, "num_filters": 16},
        "retinanet_parser": {"output_size": [64, 64]},
    },
    "mask_rcnn": TWO_STAGE,
    "cascade_mask_rcnn": TWO_STAGE,
    "shapemask": {
        **SMALL_BACKBONE,
        **SMALL_DETECTION_POSTPROCESS,
        # max_level 5: the 64 px input must be divisible by the coarsest stride.
        "architecture": {"min_level": 3, "max_level": 5, "num_classes": 4, "use_bfloat16": False},
        "retinanet_head": {"num_convs": 1, "num_filters": 16},
        "shapemask_parser": {
            "output_size": [64, 64],
            "num_sampled_masks": 3,
            "mask_crop_size": 8,
            "upsample_factor": 2,
            "mask_min_level": 3,
            "mask_max_level": 4,
        },
        "shapemask_head": {
            "mask_crop_size": 8,
            "upsample_factor": 2,
            "num_downsample_channels": 8,
            "num_convs": 1,
        },
    },
    "classification": {
        "resnet": {"resnet_depth": 10},
        "architecture": {"num_classes": 4, "use_bfloat16": False},
        "classification_parser": {"output_size": [64, 64]},
    },
    "segmentation": {
        **SMALL_BACKBONE,
        "architecture": {"num_classes": 4, "use_bfloat16": False},
        "segmentation_parser": {"output_size": [64, 64]},
    },
}
# Mask side of `detection_masks` per mask model type: Mask R-CNN's default 28 x 28 masks,
# ShapeMask's mask_crop_size * upsample_factor above.
MASK_SIZES = {"mask_rcnn": 28, "cascade_mask_rcnn": 28, "shapemask": 16}


def _check_outputs(model_type, kind, outputs, num_classes):
    if kind == "detection":
        assert outputs["num_detections"].shape == (1,)
        assert outputs["detection_boxes"].shape == (1, 10, 4)
        assert np.all(outputs["detection_classes"] < num_classes)
        if model_type in MASK_SIZES:
            # Box-relative mask probabilities, one per detection.
            size = MASK_SIZES[model_type]
            assert outputs["detection_masks"].shape == (1, 10, size, size)
            assert np.all((outputs["detection_masks"] >= 0) & (outputs["detection_masks"] <= 1))
        else:
            assert "detection_masks" not in outputs
        if model_type == "shapemask":
            # The boxes its masks span: the detection boxes scaled by outer_box_scale.
            assert outputs["detection_outer_boxes"].shape == (1, 10, 4)
    elif kind == "classification":
        assert outputs["logits"].shape == (1, num_classes)
        np.testing.assert_allclose(np.sum(outputs["probabilities"]), 1.0, rtol=1e-5)
    else:
        # The 48 x 40 raw image is its own original image.
        assert outputs["label_map"].shape == (1, 48, 40)
        assert np.all((outputs["label_map"] >= 0) & (outputs["label_map"] < num_classes))


def _in_process_predictions(model_fn, model, image):
    """PREDICT-mode predictions of the raw image padded bottom/right to the 64 x 64 input."""
    padded = np.zeros([1, 64, 64, 3], np.float32)
    padded[:, : image.shape[1], : image.shape[2]] = image
    height, width = image.shape[1:3]
    features = {
        "images": tf.constant(padded),
        "image_info": tf.constant([[[height, width], [height, width], [1, 1], [0, 0]]], tf.float32),
        "source_ids": tf.zeros([1], tf.int64),
    }
    predictions = model_fn(model, features, None, PREDICT)["predictions"]
    return {k: np.asarray(v) for k, v in predictions.items()}


def _check_equals_in_process(kind, outputs, expected, image_size):
    """The SavedModel's outputs are the in-process predictions in original-image terms."""
    if kind == "detection":
        np.testing.assert_array_equal(outputs["num_detections"], expected["num_detections"])
        np.testing.assert_array_equal(outputs["detection_classes"], expected["detection_classes"])
        np.testing.assert_allclose(
            outputs["detection_scores"], expected["detection_scores"], atol=1e-4
        )
        # Raw input: original pixels are network pixels; boxes are clipped to the raw image.
        limits = np.array([image_size[0], image_size[1]] * 2, np.float32)
        boxes = np.clip(expected["detection_boxes"], 0.0, limits)
        np.testing.assert_allclose(outputs["detection_boxes"], boxes, atol=1e-3)
        for key in ("detection_masks", "detection_outer_boxes"):
            assert (key in outputs) == (key in expected), key
            if key in expected:
                np.testing.assert_allclose(outputs[key], expected[key], atol=1e-3)
    elif kind == "classification":
        np.testing.assert_allclose(outputs["logits"], expected["logits"], atol=1e-4)
    elif "logits" in expected:
        # Logits -> network input size -> the valid (unpadded) region -> argmax.
        logits = tf.image.resize(tf.constant(expected["logits"], tf.float32), (64, 64)).numpy()
        labels = np.argmax(logits[:, : image_size[0], : image_size[1]], axis=-1)
        np.testing.assert_array_equal(outputs["label_map"], labels)
    else:
        # Class ids at the network input, cut to the valid region (the raw image's own size).
        labels = expected["classes"][:, : image_size[0], : image_size[1]]
        np.testing.assert_array_equal(outputs["label_map"], labels)


@pytest.mark.parametrize("model_type", model_fn_factory.model_types())
def test_every_registered_model_type_exports(model_type, tmp_path):
    assert model_type in TINY_PARAMS, f"add tiny params for {model_type!r} to {__file__}"
    kind = factory.kind_of(model_type)
    params = loader.load_params(model_type, [], json.dumps(TINY_PARAMS[model_type]))
    model_fn = model_fn_factory.model_fn_from_params(params)
    model = model_fn.build_model()
    checkpoint = tf.train.Checkpoint(model=checkpoints.model_variables(model))
    prefix = checkpoint.save(str(tmp_path / "run" / "ckpt"))
    spec = input_types.resolve_input_spec(
        "raw_image_tensor", 1, (48, 40), factory.network_input_size(params)
    )
    module = serving_module.build_serving_module(params, prefix, spec, OutputOptions())
    serving_module.export_saved_model(module, str(tmp_path / "export"))
    signature = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    image = np.random.default_rng(0).normal(size=(1, 48, 40, 3)).astype(np.float32)
    outputs = {k: v.numpy() for k, v in signature(input=tf.constant(image)).items()}
    _check_outputs(model_type, kind.name, outputs, params.architecture.num_classes)
    expected = _in_process_predictions(model_fn, model, image)
    _check_equals_in_process(kind.name, outputs, expected, (48, 40))
