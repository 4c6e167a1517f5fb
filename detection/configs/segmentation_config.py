"""Default parameters of semantic segmentation (the original framework's `segmentation`
config: FPN features, a segmentation head, per-pixel softmax loss, mean IoU evaluation)."""

from detection.configs import base_config
from detection.configs.merge import merge_dicts

SEGMENTATION_CFG = merge_dicts(
    base_config.BASE_CFG,
    {
        "type": "segmentation",
        "architecture": {
            "parser": "segmentation_parser",
            "num_classes": 21,
            "use_aspp": False,
            "use_pyramid_fusion": False,
        },
        "train": {
            "total_steps": 10000,
            "learning_rate": {"type": "cosine", "init_learning_rate": 0.02},
            # The stem and C2 group of a ResNet in the original's TF1 variable names.
            "frozen_variable_prefix": (
                r"(resnet\d+)\/(conv2d(|_([1-9]|10))|batch_normalization(|_([1-9]|10)))\/"
            ),
            "transpose_input": False,
            "gradient_clip_norm": 0.5,
        },
        "eval": {"eval_samples": 1449, "type": "customized"},
        "segmentation_parser": {
            "output_size": [512, 512],
            "resize_eval": False,
            "aug_rand_hflip": True,
            "aug_scale_min": 0.75,
            "aug_scale_max": 1.5,
            "aug_policy": "",
            "ignore_label": 255,
        },
        "fpn": base_config.DETECTION_CFG["fpn"],
        "nasfpn": base_config.DETECTION_CFG["nasfpn"],
        "segmentation_head": {
            "level": 3,
            "num_convs": 2,
            "upsample_factor": 1,
            "upsample_num_filters": 256,
            "use_batch_norm": True,
        },
        "segmentation_loss": {
            "ignore_label": 255,
            "class_weights": [],
            "use_groundtruth_dimension": True,
            "label_smoothing": 0.0,
        },
    },
)

SEGMENTATION_RESTRICTIONS = base_config.BASE_RESTRICTIONS + [
    # The parser pads with its ignore label; the loss and the IoU must skip that very value.
    "segmentation_parser.ignore_label == segmentation_loss.ignore_label",
    "segmentation_parser.aug_scale_min <= segmentation_parser.aug_scale_max",
    "segmentation_head.upsample_factor >= 1",
    "segmentation_loss.label_smoothing >= 0.0",
    "segmentation_loss.label_smoothing < 1.0",
]
