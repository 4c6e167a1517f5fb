"""Default parameters of Faster / Mask R-CNN and Cascade Mask R-CNN.

`mask_rcnn` is the original framework's `mask_rcnn` config (Faster R-CNN with
`architecture.include_mask: false`). `cascade_mask_rcnn`, the model type of the original's
copy-paste experiment files, has the same defaults: its cascade is switched on by
`roi_sampling.cascade_iou_thresholds` (null: one stage, which is Mask R-CNN).
"""

from detection.configs import base_config
from detection.configs.merge import merge_dicts

MASKRCNN_CFG = merge_dicts(
    merge_dicts(base_config.BASE_CFG, base_config.DETECTION_CFG),
    {
        "type": "mask_rcnn",
        "architecture": {
            "min_level": 2,
            "max_level": 6,
            "parser": "maskrcnn_parser",
            "include_mask": True,
            "mask_target_size": 28,
        },
        "eval": {"type": "box_and_mask"},
        "anchor": {"num_scales": 1, "anchor_size": 8},
        "postprocess": {"pre_nms_num_boxes": 1000},
        "maskrcnn_parser": {
            "output_size": [1024, 1024],
            "rpn_match_threshold": 0.7,
            "rpn_unmatched_threshold": 0.3,
            "rpn_batch_size_per_im": 256,
            "rpn_fg_fraction": 0.5,
            "aug_rand_hflip": True,
            "aug_scale_min": 1.0,
            "aug_scale_max": 1.0,
            # New: the augmentation policy as retinanet_parser's (the original's Mask R-CNN
            # parser had none); masks follow the geometric ops (docs/augmentation.md).
            "aug_policy": "",
            "randaug_num_layers": 2,
            "randaug_magnitude": 10,
            "skip_crowd_during_training": True,
            "max_num_instances": 100,
            "mask_crop_size": 112,
            "regenerate_source_id": False,
            "copy_paste": False,
        },
        "rpn_head": {
            "anchors_per_location": None,
            "num_convs": 1,
            "num_filters": 256,
            "use_separable_conv": False,
            "use_batch_norm": False,
            "cast_to_float32": False,
        },
        "frcnn_head": {
            "num_convs": 0,
            "num_filters": 256,
            "use_separable_conv": False,
            "num_fcs": 2,
            "fc_dims": 1024,
            "use_batch_norm": False,
            "class_agnostic_bbox_pred": False,
            "cascade_class_ensemble": False,
        },
        "mrcnn_head": {
            "num_convs": 4,
            "num_filters": 256,
            "use_separable_conv": False,
            "use_batch_norm": False,
            "class_agnostic_mask_pred": False,
        },
        "rpn_score_loss": {"rpn_batch_size_per_im": 256},
        "rpn_box_loss": {"huber_loss_delta": 1.0 / 9.0},
        "frcnn_box_loss": {"huber_loss_delta": 1.0},
        "roi_proposal": {
            "rpn_pre_nms_top_k": 2000,
            "rpn_post_nms_top_k": 1000,
            "rpn_nms_threshold": 0.7,
            "rpn_score_threshold": 0.0,
            "rpn_min_size_threshold": 0.0,
            "test_rpn_pre_nms_top_k": 1000,
            "test_rpn_post_nms_top_k": 1000,
            "test_rpn_nms_threshold": 0.7,
            "test_rpn_score_threshold": 0.0,
            "test_rpn_min_size_threshold": 0.0,
            "use_batched_nms": False,
        },
        "roi_sampling": {
            "cascade_iou_thresholds": None,
            "num_samples_per_image": 512,
            "fg_fraction": 0.25,
            "fg_iou_thresh": 0.5,
            "bg_iou_thresh_hi": 0.5,
            "bg_iou_thresh_lo": 0.0,
            "mix_gt_boxes": True,
        },
        "mask_sampling": {"num_mask_samples_per_image": 128},
    },
)

MASKRCNN_RESTRICTIONS = base_config.BASE_RESTRICTIONS + [
    "maskrcnn_parser.rpn_unmatched_threshold <= maskrcnn_parser.rpn_match_threshold",
    "maskrcnn_parser.aug_scale_min <= maskrcnn_parser.aug_scale_max",
    "rpn_score_loss.rpn_batch_size_per_im == maskrcnn_parser.rpn_batch_size_per_im",
    "roi_sampling.bg_iou_thresh_lo <= roi_sampling.bg_iou_thresh_hi",
    "mask_sampling.num_mask_samples_per_image <= roi_sampling.num_samples_per_image",
]

CASCADE_MASKRCNN_CFG = merge_dicts(MASKRCNN_CFG, {"type": "cascade_mask_rcnn"})
