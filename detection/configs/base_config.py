"""Parameters shared by every model: runtime, training loop, evaluation, backbones.

Key names, nesting and defaults are those of the original TPU detection framework, so that
its users' YAML files and override strings load unchanged. Keys that have no effect in
TensorFlow 2 are kept (and listed in `inert_keys.py`) so old files still load.
"""

BASE_CFG = {
    "model_dir": "",
    "use_tpu": True,
    "isolate_session_state": False,
    "architecture": {
        "min_level": 3,
        "max_level": 7,
        "use_bfloat16": True,
        "space_to_depth_block_size": 1,
        "pre_parser": None,
        "num_classes": 91,
        "parser": None,
        "backbone": "resnet",
        "multilevel_features": "fpn",
    },
    "train": {
        "iterations_per_loop": 100,
        "train_batch_size": 64,
        "total_steps": 22500,
        "num_cores_per_replica": None,
        "input_partition_dims": None,
        "optimizer": {"type": "momentum", "momentum": 0.9},
        "learning_rate": {
            "type": "step",
            "warmup_learning_rate": 0.0067,
            "warmup_steps": 500,
            "init_learning_rate": 0.08,
            "learning_rate_levels": [0.008, 0.0008],
            "learning_rate_steps": [15000, 20000],
        },
        "checkpoint": {"path": "", "prefix": "", "skip_variables_regex": ""},
        "frozen_variable_prefix": None,
        "train_file_pattern": "",
        "train_dataset_type": "tfrecord",
        "transpose_input": True,
        "regularization_variable_regex": r".*(kernel|weight):0$",
        "l2_weight_decay": 0.0001,
        "gradient_clip_norm": 0.0,
        "space_to_depth_block_size": 1,
        "pre_parser_dataset": {"file_pattern": "", "dataset_type": "tfrecord"},
        # New (executor): save every N steps at a host-loop boundary (null: every host loop),
        # how many checkpoints to keep, and XLA for the step (null: on for TPU only).
        "checkpoint_interval": None,
        "checkpoint_max_to_keep": 5,
        "jit_compile": None,
    },
    "eval": {
        "eval_batch_size": 8,
        "eval_samples": None,
        "min_eval_interval": 180,
        "eval_timeout": None,
        "num_steps_per_eval": 1000,
        "eval_file_pattern": "",
        "eval_dataset_type": "tfrecord",
        "skip_eval_loss": False,
        "suffix": "",
        "type": "box",
    },
    "predict": {"predict_batch_size": 8},
    "batch_norm_activation": {
        "batch_norm_momentum": 0.997,
        "batch_norm_epsilon": 0.0001,
        "batch_norm_trainable": True,
        "use_sync_bn": False,
        "activation": "relu",
    },
    "dropblock": {"dropblock_keep_prob": None, "dropblock_size": None},
    "resnet": {"resnet_depth": 50, "init_drop_connect_rate": None},
    # New in both SpineNet sections: the scaling of the model id, each key overriding one
    # value (null: the model id's). The original's own SpineNet files set them (its
    # spinenet*_retinanet.yaml once scaled the models with these keys instead of model_id).
    "spinenet": {
        "model_id": "49",
        "init_drop_connect_rate": None,
        "use_native_resize_op": False,
        "endpoints_num_filters": None,
        "filter_size_scale": None,
        "resample_alpha": None,
        "block_repeats": None,
    },
    "spinenet_mbconv": {
        "model_id": "49",
        "se_ratio": 0.2,
        "init_drop_connect_rate": None,
        "use_native_resize_op": False,
        "endpoints_num_filters": None,
        "filter_size_scale": None,
        "block_repeats": None,
    },
    # New: width and depth multipliers of `backbone: efficientnet-bN` (null: bN's published
    # coefficients); the original had no keys for EfficientNet.
    "efficientnet": {"width_coefficient": None, "depth_coefficient": None},
    "enable_summary": False,
}

# COCO evaluation, feature-pyramid, anchor and postprocessing parameters of the detectors.
DETECTION_CFG = {
    "eval": {
        "use_json_file": True,
        "val_json_file": "",
        "per_category_metrics": False,
        # New: score with faster-coco-eval's COCOeval (C++ loops, same 12 numbers; the
        # optional `fast-eval` extra) instead of pycocotools'.
        "use_fast_coco_eval": False,
    },
    "anchor": {"num_scales": 3, "aspect_ratios": [1.0, 2.0, 0.5], "anchor_size": 4.0},
    "fpn": {"fpn_feat_dims": 256, "use_separable_conv": False, "use_batch_norm": True},
    "nasfpn": {
        "fpn_feat_dims": 256,
        # New: the original's own retinanet_nasfpn.yaml sets these. None means the
        # architecture's levels; when set they must equal them (checked by the factory).
        "min_level": None,
        "max_level": None,
        "num_repeats": 5,
        "use_separable_conv": False,
        "init_drop_connect_rate": None,
        "block_fn": "conv",
        "activation": None,
        "use_sum_for_combination": False,
    },
    "postprocess": {
        "apply_nms": True,
        "use_batched_nms": False,
        "nms_version": "v1",
        "max_total_size": 100,
        "nms_iou_threshold": 0.5,
        "score_threshold": 0.05,
        "pre_nms_num_boxes": 5000,
        "apply_sigmoid": True,
    },
}

BASE_RESTRICTIONS = [
    "architecture.min_level <= architecture.max_level",
    "train.train_batch_size > 0",
    "train.total_steps > 0",
    "train.iterations_per_loop > 0",
    "eval.eval_batch_size > 0",
]
