"""Default parameters of image classification (the original's `classification` config)."""

from detection.configs import base_config
from detection.configs.merge import merge_dicts

CLASSIFICATION_CFG = merge_dicts(
    base_config.BASE_CFG,
    {
        "type": "classification",
        # `multilevel_features` is new here (the original's own
        # spinenet49_classification.yaml sets it): 'identity' feeds the backbone's levels to the
        # head directly, the only meaningful choice for classification.
        "architecture": {
            "parser": "classification_parser",
            "num_classes": 1001,
            "multilevel_features": "identity",
        },
        "train": {
            "iterations_per_loop": 1000,
            "train_batch_size": 1024,
            "total_steps": 112603,
            "learning_rate": {
                "type": "cosine",
                "warmup_learning_rate": 0.0,
                "warmup_steps": 6255,
                "init_learning_rate": 0.4,
                "learning_rate_levels": [0.04, 0.004, 0.0004],
                "learning_rate_steps": [37534, 75069, 100091],
            },
            "label_smoothing": 0.0,
        },
        "eval": {"eval_batch_size": 1024, "eval_samples": 50000, "type": "customized"},
        "batch_norm_activation": {"batch_norm_momentum": 0.9, "batch_norm_epsilon": 1e-05},
        "classification_parser": {
            "output_size": [224, 224],
            "aug_rand_hflip": True,
            # New (the original's classification parser had no augmentation policy):
            # '' or 'randaugment', RandAugment's N ops per image at magnitude M in [0, 10]
            # (docs/augmentation.md), as in the detection parsers.
            "aug_policy": "",
            "randaug_num_layers": 2,
            "randaug_magnitude": 10,
        },
        "classification_head": {
            "endpoints_num_filters": 0,
            "aggregation": "top",
            "dropout_rate": 0.0,
        },
    },
)

CLASSIFICATION_RESTRICTIONS = base_config.BASE_RESTRICTIONS + [
    "train.label_smoothing >= 0.0",
    "train.label_smoothing < 1.0",
]
