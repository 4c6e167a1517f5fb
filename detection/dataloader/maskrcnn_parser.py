"""Mask R-CNN parser: the shared detection input path plus RPN targets and padded instances.

Training labels (M = max_num_instances, S = mask_crop_size, A = anchors per location):
  rpn_score_targets {level: [h_l, w_l, A] int32} (1 foreground, 0 background, -1 ignored),
  rpn_box_targets {level: [h_l, w_l, A * 4] float32},
  gt_boxes [M, 4] float32 (network-input pixels, -1 padded),
  gt_classes [M] int32 (-1 padded),
  gt_masks [M, S, S] float32 in [0, 1] (include_mask only; -1 padded): each instance mask
  cropped to its (visible, clipped) box and resized to S x S.
With copy-paste (`copy_paste=CopyPaste(...)`, training takes a second argument: the objects of
another image from `extract_objects_parser`), the labels describe the composed image: the
training image's remaining objects first (occluded masks and boxes updated), then the pasted
ones.
Evaluation labels: only `groundtruths` (mask AP reads the annotation JSON, so no masks are
decoded).
"""

import tensorflow as tf

from detection.dataloader import preprocess_ops
from detection.dataloader.anchor_labeler import RpnAnchorLabeler
from detection.dataloader.base_parser import DetectionParser
from detection.ops import masks as mask_ops
from detection.ops.anchors import Anchors


class MaskRCNNParser(DetectionParser):
    """Callable `serialized tf.Example -> (features, labels)` for one mode."""

    def __init__(
        self,
        anchors: Anchors,
        rpn_match_threshold=0.7,
        rpn_unmatched_threshold=0.3,
        rpn_batch_size_per_im=256,
        rpn_fg_fraction=0.5,
        include_mask=True,
        mask_crop_size=112,
        seed=None,
        **kwargs,
    ):
        """Builds the parser.

        Args:
          anchors: the Anchors for `output_size` (RPN levels).
          rpn_match_threshold, rpn_unmatched_threshold: IoU bounds of RPN foreground /
            background anchors.
          rpn_batch_size_per_im, rpn_fg_fraction: RPN anchors sampled per image and the
            largest foreground share of them.
          include_mask: decode instance masks and output `gt_masks` (training).
          mask_crop_size: S, the side of each `gt_masks` crop.
          seed: optional op seed of the RPN sampling.
          **kwargs: `DetectionParser` arguments (output_size, num_classes, is_training,
            augmentation, max_num_instances...).
        """
        super().__init__(include_mask=include_mask, **kwargs)
        self._output_masks = include_mask
        self._labeler = RpnAnchorLabeler(
            anchors,
            rpn_match_threshold,
            rpn_unmatched_threshold,
            rpn_batch_size_per_im,
            rpn_fg_fraction,
            seed=seed,
        )
        self._mask_crop_size = int(mask_crop_size)
        if self._mask_crop_size < 1:
            raise ValueError(f"mask_crop_size must be >= 1, got {mask_crop_size}")

    def _pad(self, values, pad_value):
        return preprocess_ops.pad_to_fixed_size(
            values, self._max_num_instances, pad_value, "groundtruth instances"
        )

    def _train_labels(self, instances):
        score_targets, box_targets = self._labeler.label_anchors(instances.boxes, instances.classes)
        labels = {
            "rpn_score_targets": score_targets,
            "rpn_box_targets": box_targets,
            "gt_boxes": self._pad(instances.boxes, -1.0),
            "gt_classes": self._pad(instances.classes, -1),
        }
        if self._output_masks:
            # Crop the original-resolution masks with the visible box mapped back to original
            # pixels: the same region as the resized mask, without resizing n full masks.
            num_own = tf.shape(instances.masks)[0]
            crops = mask_ops.crop_and_resize_masks(
                instances.masks, instances.original_boxes[:num_own], self._mask_crop_size
            )
            if instances.pasted_mask_crops is not None:
                crops = tf.concat([crops, instances.pasted_mask_crops], 0)
            labels["gt_masks"] = self._pad(crops, -1.0)
        return labels
