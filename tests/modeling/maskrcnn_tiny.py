"""The tiny (Cascade) Mask R-CNN params shared by the model tests and the replica script.

Sampling settings take every candidate ROI (num_samples_per_image >= proposals + groundtruth,
foreground fraction 1, every foreground ROI gets a mask), so a step's ROIs do not depend on
the random keys of the sampler: eager and XLA runs, or one and two replicas, compare exactly.
"""

from detection.configs import loader

BATCH = 2
IMAGE_SIZE = 64
MAX_DETECTIONS = 10
MAX_INSTANCES = 8
PROPOSALS = 16
SAMPLES = PROPOSALS + MAX_INSTANCES
MASK_SIZE = 8
NUM_CLASSES = 4


def tiny_params(paths, model="mask_rcnn", **extra):
    """ResNet-10, 16-channel FPN P2-P4, small heads, 64 px, 4 classes (background + 3)."""
    override = {
        "architecture": {
            "min_level": 2,
            "max_level": 4,
            "num_classes": NUM_CLASSES,
            "use_bfloat16": False,
            "mask_target_size": MASK_SIZE,
        },
        "resnet": {"resnet_depth": 10},
        "fpn": {"fpn_feat_dims": 16},
        "anchor": {"anchor_size": 3.0},
        "rpn_head": {"num_filters": 16},
        "frcnn_head": {"fc_dims": 32},
        "mrcnn_head": {"num_convs": 1, "num_filters": 8},
        "rpn_score_loss": {"rpn_batch_size_per_im": 64},
        "maskrcnn_parser": {
            "output_size": [IMAGE_SIZE, IMAGE_SIZE],
            "max_num_instances": MAX_INSTANCES,
            "mask_crop_size": 16,
            "rpn_batch_size_per_im": 64,
        },
        "roi_proposal": {
            "rpn_pre_nms_top_k": 64,
            "rpn_post_nms_top_k": PROPOSALS,
            "test_rpn_pre_nms_top_k": 64,
            "test_rpn_post_nms_top_k": PROPOSALS,
        },
        "roi_sampling": {"num_samples_per_image": SAMPLES, "fg_fraction": 1.0},
        "mask_sampling": {"num_mask_samples_per_image": SAMPLES},
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
        # Threshold 0: an untrained head still fills every detection slot.
        "postprocess": {
            "max_total_size": MAX_DETECTIONS,
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
    return loader.load_params(model, [], override)


CASCADE = {"roi_sampling.cascade_iou_thresholds": [0.6, 0.7]}
