"""The original's Cascade Mask R-CNN experiment files build and run, shrunk to test size.

`cascade_maskrcnn_effb7_nasfpn_1280.yaml` (EfficientNet-B7, NAS-FPN P3-P7, 9 anchors, two
cascade stages at IoU 0.7 / 0.8, class-agnostic boxes, class ensemble) and
`maskrcnn_resnet50_1024_copy_paste.yaml` (type `cascade_mask_rcnn` without
`cascade_iou_thresholds`: one stage, i.e. Mask R-CNN) are loaded unchanged, then only widths,
depths, sizes and counts are overridden: every structural key (backbone, decoder, levels,
anchors, stage thresholds, head layouts, batch norm) stays the file's.
"""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from detection.configs import loader
from detection.core.modes import PREDICT
from detection.model_fns import factory as model_fn_factory
from detection.modeling.decoders.fpn import Fpn
from detection.modeling.decoders.nasfpn import NasFpn

CONFIGS = pathlib.Path(__file__).parents[1] / "data" / "original_configs"
IMAGE_SIZE = 128  # divisible by 2**7 (the EfficientNet file's max_level)
BATCH = 2
NUM_GT = 3
MASK_CROP = 16
PROPOSALS = 16
SAMPLES = 12

# Only sizes: widths, repeats, image and crop sizes, proposal and sample counts.
TINY = {
    "architecture": {"use_bfloat16": False},
    "maskrcnn_parser": {
        "output_size": [IMAGE_SIZE, IMAGE_SIZE],
        "max_num_instances": NUM_GT,
        "mask_crop_size": MASK_CROP,
    },
    "rpn_head": {"num_filters": 8},
    "frcnn_head": {"num_filters": 8, "fc_dims": 16},
    "mrcnn_head": {"num_filters": 8},
    "roi_proposal": {
        "rpn_pre_nms_top_k": 32,
        "rpn_post_nms_top_k": PROPOSALS,
        "test_rpn_pre_nms_top_k": 32,
        "test_rpn_post_nms_top_k": PROPOSALS,
    },
    "roi_sampling": {"num_samples_per_image": SAMPLES},
    "mask_sampling": {"num_mask_samples_per_image": 4},
    "postprocess": {"pre_nms_num_boxes": 16, "max_total_size": 5},
}

CASES = {
    "cascade_maskrcnn_effb7_nasfpn_1280.yaml": {
        "override": {
            "efficientnet": {"width_coefficient": 0.1, "depth_coefficient": 0.1},
            "nasfpn": {"fpn_feat_dims": 8, "num_repeats": 1},
        },
        "decoder": NasFpn,
        "stage_thresholds": (0.7, 0.8),
        "box_outputs": 4,  # class_agnostic_bbox_pred: true
    },
    "maskrcnn_resnet50_1024_copy_paste.yaml": {
        "override": {"resnet": {"resnet_depth": 10}, "fpn": {"fpn_feat_dims": 8}},
        "decoder": Fpn,
        "stage_thresholds": (),
        "box_outputs": 4 * 91,
    },
}


def _params(name):
    case = CASES[name]
    override = {key: dict(TINY.get(key, {}), **case["override"].get(key, {})) for key in TINY}
    override.update({k: v for k, v in case["override"].items() if k not in TINY})
    return loader.load_params("cascade_mask_rcnn", [str(CONFIGS / name)], params_override=override)


def _train_inputs(rng):
    """Two 128 px images with three groundtruth boxes each (the last one padding)."""
    corners = rng.uniform(0, IMAGE_SIZE / 2, size=(BATCH, NUM_GT, 2))
    sizes = rng.uniform(24, IMAGE_SIZE / 2, size=(BATCH, NUM_GT, 2))
    boxes = np.concatenate([corners, corners + sizes], axis=-1).astype(np.float32)
    classes = rng.integers(1, 91, size=(BATCH, NUM_GT)).astype(np.int32)
    boxes[:, -1], classes[:, -1] = -1.0, -1
    masks = (rng.uniform(size=(BATCH, NUM_GT, MASK_CROP, MASK_CROP)) > 0.5).astype(np.float32)
    info = [[IMAGE_SIZE, IMAGE_SIZE], [IMAGE_SIZE, IMAGE_SIZE], [1.0, 1.0], [0.0, 0.0]]
    return {
        "images": tf.constant(rng.normal(size=(BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)), tf.float32),
        "image_info": tf.constant([info] * BATCH, tf.float32),
        "gt_boxes": tf.constant(boxes),
        "gt_classes": tf.constant(classes),
        "gt_masks": tf.constant(masks),
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_original_cascade_file_builds_and_runs(name):
    case = CASES[name]
    params = _params(name)
    # The file's structure survives the size override.
    original = loader.load_params("cascade_mask_rcnn", [str(CONFIGS / name)])
    assert params.type == original.type == "cascade_mask_rcnn"
    for key in ("backbone", "multilevel_features", "min_level", "max_level", "num_classes"):
        assert params.architecture[key] == original.architecture[key], key
    assert (
        params.roi_sampling.cascade_iou_thresholds == original.roi_sampling.cascade_iou_thresholds
    )

    model_fn = model_fn_factory.model_fn_from_params(params)
    network = model_fn.build_model()
    assert isinstance(network.fpn, case["decoder"])
    num_stages = 1 + len(case["stage_thresholds"])
    assert [head.name for head in network.box_heads] == [
        f"frcnn_layer_{stage}" for stage in range(num_stages)
    ]

    outputs = network(_train_inputs(np.random.default_rng(0)), training=True)
    assert len(outputs["stages"]) == num_stages
    for stage in outputs["stages"]:
        assert stage["rois"].shape == (BATCH, SAMPLES, 4)
        assert stage["box_outputs"].shape == (BATCH, SAMPLES, case["box_outputs"])
        assert np.all(np.isfinite(stage["class_outputs"].numpy()))

    features = {
        "images": tf.zeros([BATCH, IMAGE_SIZE, IMAGE_SIZE, 3]),
        "image_info": _train_inputs(np.random.default_rng(1))["image_info"],
        "source_ids": tf.constant([1, 2], tf.int64),
    }
    predictions = model_fn(network, features, None, PREDICT)["predictions"]
    assert predictions["detection_boxes"].shape == (BATCH, 5, 4)
    assert predictions["detection_masks"].shape == (BATCH, 5, 28, 28)
