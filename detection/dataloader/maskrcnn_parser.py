"""Mask R-CNN parser: decoded tf.Example -> (features, labels) with static shapes.

Training: crowd boxes skipped when asked, random horizontal flip of image, boxes and masks
together, scale jitter with a random crop, resize keeping the aspect ratio and pad to
`output_size`, degenerate boxes (and their masks) dropped, RPN targets per level, and the
groundtruth instances padded to `max_num_instances` for the second stage.
Evaluation: resize and pad only, plus the groundtruths the COCO evaluator needs (mask AP reads
the annotation JSON, so no masks are decoded).
"""

import tensorflow as tf

from detection.dataloader import preprocess_ops
from detection.dataloader.anchor_labeler import RpnAnchorLabeler
from detection.dataloader.anchors import Anchors
from detection.dataloader.retinanet_parser import check_class_ids, groundtruths_for_eval
from detection.dataloader.tf_example_decoder import TfExampleDecoder
from detection.ops import boxes as box_ops


class MaskrcnnParser:
    """Callable `serialized tf.Example -> (features, labels)` for one mode.

    Training output (M = max_num_instances, S = mask_crop_size, A = anchors per location):
      features: images [H, W, 3] float32, image_info [4, 2], source_ids [] int64.
      labels: rpn_score_targets {level: [h_l, w_l, A] int32} (1 foreground, 0 background,
        -1 ignored), rpn_box_targets {level: [h_l, w_l, A * 4] float32},
        gt_boxes [M, 4] float32 (network-input pixels, -1 padded),
        gt_classes [M] int32 (-1 padded),
        gt_masks [M, S, S] float32 in [0, 1] (include_mask only; -1 padded): each instance
        mask cropped to its (visible, clipped) box and resized to S x S.
    Evaluation output: the same features; labels {groundtruths: ...} as
    `retinanet_parser.groundtruths_for_eval` (original pixels).
    """

    def __init__(
        self,
        output_size,
        anchors: Anchors,
        num_classes,
        is_training,
        rpn_match_threshold=0.7,
        rpn_unmatched_threshold=0.3,
        rpn_batch_size_per_im=256,
        rpn_fg_fraction=0.5,
        aug_rand_hflip=True,
        aug_scale_min=1.0,
        aug_scale_max=1.0,
        skip_crowd_during_training=True,
        max_num_instances=100,
        include_mask=True,
        mask_crop_size=112,
        regenerate_source_id=False,
        seed=None,
    ):
        """Builds the parser.

        Args:
          output_size: (height, width) of the network input.
          anchors: the Anchors for `output_size` (RPN levels).
          num_classes: number of classes including background; larger ids are an error.
          is_training: training (augmentation, targets) or evaluation (adds groundtruths).
          rpn_match_threshold, rpn_unmatched_threshold: IoU bounds of RPN foreground /
            background anchors.
          rpn_batch_size_per_im, rpn_fg_fraction: RPN anchors sampled per image and the
            largest foreground share of them.
          aug_rand_hflip, aug_scale_min, aug_scale_max: training augmentation.
          skip_crowd_during_training: drop is_crowd instances from the training targets.
          max_num_instances: M, the padded number of groundtruth instances.
          include_mask: decode instance masks and output `gt_masks` (training).
          mask_crop_size: S, the side of each `gt_masks` crop.
          regenerate_source_id: hash the encoded image into a source_id.
          seed: optional op seed of the RPN sampling.
        """
        self._output_size = [int(output_size[0]), int(output_size[1])]
        self._labeler = RpnAnchorLabeler(
            anchors,
            rpn_match_threshold,
            rpn_unmatched_threshold,
            rpn_batch_size_per_im,
            rpn_fg_fraction,
            seed=seed,
        )
        self._num_classes = num_classes
        self._is_training = is_training
        self._aug_rand_hflip = aug_rand_hflip
        self._aug_scale_min = aug_scale_min
        self._aug_scale_max = aug_scale_max
        self._skip_crowd = skip_crowd_during_training
        self._max_num_instances = int(max_num_instances)
        self._include_mask = include_mask
        self._mask_crop_size = int(mask_crop_size)
        if self._mask_crop_size < 1:
            raise ValueError(f"mask_crop_size must be >= 1, got {mask_crop_size}")
        self._decoder = TfExampleDecoder(
            include_mask=include_mask and is_training, regenerate_source_id=regenerate_source_id
        )

    def __call__(self, serialized):
        decoded = self._decoder.decode(serialized)
        with tf.control_dependencies(
            [
                check_class_ids(
                    decoded["groundtruth_classes"], self._num_classes, decoded["source_id"]
                )
            ]
        ):
            decoded["groundtruth_classes"] = tf.identity(decoded["groundtruth_classes"])
        if self._is_training:
            return self._parse_train(decoded)
        return self._parse_eval(decoded)

    def _parse_train(self, decoded):
        classes = tf.cast(decoded["groundtruth_classes"], tf.int32)
        boxes = decoded["groundtruth_boxes"]
        masks = decoded["groundtruth_instance_masks"] if self._include_mask else None
        if self._skip_crowd:
            keep = tf.where(tf.logical_not(decoded["groundtruth_is_crowd"]))[:, 0]
            classes, boxes = tf.gather(classes, keep), tf.gather(boxes, keep)
            if masks is not None:
                masks = tf.gather(masks, keep)
        image = preprocess_ops.normalize_image(decoded["image"])
        if self._aug_rand_hflip:
            image, boxes, masks = preprocess_ops.random_horizontal_flip(image, boxes, masks)

        original_size = tf.cast(tf.shape(image)[:2], tf.float32)
        boxes = box_ops.denormalize_boxes(boxes, original_size)
        image, image_info = preprocess_ops.resize_and_crop_image(
            image, self._output_size, self._aug_scale_min, self._aug_scale_max
        )
        image.set_shape(self._output_size + [3])
        scale, offset = image_info[2], image_info[3]
        boxes = preprocess_ops.resize_and_crop_boxes(boxes, scale, self._output_size, offset)
        keep = preprocess_ops.non_empty_box_indices(boxes)
        boxes, classes = tf.gather(boxes, keep), tf.gather(classes, keep)

        score_targets, box_targets = self._labeler.label_anchors(boxes, classes)
        pad = preprocess_ops.pad_to_fixed_size
        labels = {
            "rpn_score_targets": score_targets,
            "rpn_box_targets": box_targets,
            "gt_boxes": pad(boxes, self._max_num_instances, -1.0, "groundtruth instances"),
            "gt_classes": pad(classes, self._max_num_instances, -1, "groundtruth instances"),
        }
        if masks is not None:
            # Crop the original-resolution masks with the visible box mapped back to original
            # pixels: the same region as the resized mask, without resizing n full masks.
            original_boxes = (boxes + tf.tile(offset, [2])) / tf.tile(scale, [2])
            crops = preprocess_ops.crop_and_resize_masks(
                tf.gather(masks, keep), original_boxes, self._mask_crop_size
            )
            labels["gt_masks"] = pad(crops, self._max_num_instances, -1.0, "groundtruth instances")
        features = {"images": image, "image_info": image_info, "source_ids": decoded["source_id"]}
        return features, labels

    def _parse_eval(self, decoded):
        image = preprocess_ops.normalize_image(decoded["image"])
        image, image_info = preprocess_ops.resize_and_crop_image(image, self._output_size)
        image.set_shape(self._output_size + [3])
        labels = {"groundtruths": groundtruths_for_eval(decoded, self._max_num_instances)}
        features = {"images": image, "image_info": image_info, "source_ids": decoded["source_id"]}
        return features, labels
