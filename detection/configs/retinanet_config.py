"""Default parameters of RetinaNet (the original framework's `retinanet` config)."""

from detection.configs import base_config
from detection.configs.merge import merge_dicts

RETINANET_CFG = merge_dicts(
    merge_dicts(base_config.BASE_CFG, base_config.DETECTION_CFG),
    {
        "type": "retinanet",
        "architecture": {"parser": "retinanet_parser", "output_flat_fpn_features": False},
        "retinanet_parser": {
            "output_size": [640, 640],
            "match_threshold": 0.5,
            "unmatched_threshold": 0.5,
            "aug_rand_hflip": True,
            "aug_scale_min": 1.0,
            "aug_scale_max": 1.0,
            "aug_policy": "",
            # New: RandAugment's N and M, read with aug_policy: randaugment
            # (docs/augmentation.md).
            "randaug_num_layers": 2,
            "randaug_magnitude": 10,
            "skip_crowd_during_training": True,
            "max_num_instances": 100,
            "regenerate_source_id": False,
        },
        "retinanet_head": {
            "anchors_per_location": None,
            "num_convs": 4,
            "num_filters": 256,
            "use_separable_conv": False,
            "use_batch_norm": True,
        },
        "retinanet_loss": {
            "focal_loss_alpha": 0.25,
            "focal_loss_gamma": 1.5,
            "huber_loss_delta": 0.1,
            "box_loss_weight": 50,
            "normalizer_momentum": 0.0,
        },
    },
)

RETINANET_RESTRICTIONS = base_config.BASE_RESTRICTIONS + [
    "retinanet_parser.unmatched_threshold <= retinanet_parser.match_threshold",
    "retinanet_parser.aug_scale_min <= retinanet_parser.aug_scale_max",
    "retinanet_parser.max_num_instances > 0",
    "postprocess.max_total_size > 0",
]
