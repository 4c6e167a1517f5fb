"""RetinaNet parser: decoded tf.Example -> (features, labels) with static shapes.

Training: random horizontal flip, scale jitter in [aug_scale_min, aug_scale_max] with a random
crop, resize keeping the aspect ratio and pad to `output_size`, crowd boxes skipped when asked,
degenerate boxes dropped, anchor targets per level.
Evaluation: resize and pad only, plus the groundtruths the COCO evaluator needs, padded to
`max_num_instances`.
"""

import tensorflow as tf

from detection.dataloader import preprocess_ops
from detection.dataloader.anchor_labeler import AnchorLabeler
from detection.dataloader.anchors import Anchors
from detection.dataloader.tf_example_decoder import TfExampleDecoder
from detection.ops import boxes as box_ops


def check_class_ids(classes, num_classes, source_id):
    """Asserts 0 <= class id < num_classes; the error names the image's source_id."""
    in_range = tf.reduce_all(classes < tf.cast(num_classes, classes.dtype))
    return tf.debugging.Assert(
        in_range,
        [
            f"class id >= architecture.num_classes={num_classes} in the image with source_id",
            source_id,
            "class ids:",
            classes,
        ],
        summarize=100,
    )


def groundtruths_for_eval(decoded, max_num_instances):
    """COCO-evaluation groundtruths of one image, padded (docs/CONVENTIONS.md)."""
    height = tf.cast(decoded["height"], tf.float32)
    width = tf.cast(decoded["width"], tf.float32)
    boxes = box_ops.denormalize_boxes(decoded["groundtruth_boxes"], tf.stack([height, width]))
    num = tf.shape(decoded["groundtruth_classes"])[0]
    pad = preprocess_ops.pad_to_fixed_size
    return {
        "source_id": decoded["source_id"],
        "height": height,
        "width": width,
        "num_detections": tf.minimum(num, max_num_instances),
        "boxes": pad(boxes, max_num_instances, -1.0, "groundtruth boxes"),
        "classes": pad(
            tf.cast(decoded["groundtruth_classes"], tf.int32),
            max_num_instances,
            -1,
            "groundtruth boxes",
        ),
        "areas": pad(decoded["groundtruth_area"], max_num_instances, -1.0, "groundtruth boxes"),
        "is_crowds": pad(
            tf.cast(decoded["groundtruth_is_crowd"], tf.int32),
            max_num_instances,
            0,
            "groundtruth boxes",
        ),
    }


class RetinanetParser:
    """Callable `serialized tf.Example -> (features, labels)` for one mode."""

    def __init__(
        self,
        output_size,
        anchors: Anchors,
        num_classes,
        is_training,
        match_threshold=0.5,
        unmatched_threshold=0.5,
        aug_rand_hflip=True,
        aug_scale_min=1.0,
        aug_scale_max=1.0,
        skip_crowd_during_training=True,
        max_num_instances=100,
        regenerate_source_id=False,
        autoaugment=None,
    ):
        """Builds the parser.

        Args:
          output_size: (height, width) of the network input.
          anchors: the Anchors for `output_size`.
          num_classes: number of classes including background; larger ids are an error.
          is_training: training (augmentation, targets) or evaluation (adds groundtruths).
          autoaugment: optional callable (uint8 image [h, w, 3], normalized boxes [n, 4]) ->
            (image, boxes) applied before the other training augmentations.
        """
        self._output_size = [int(output_size[0]), int(output_size[1])]
        self._anchors = anchors
        self._labeler = AnchorLabeler(anchors, match_threshold, unmatched_threshold)
        self._num_classes = num_classes
        self._is_training = is_training
        self._aug_rand_hflip = aug_rand_hflip
        self._aug_scale_min = aug_scale_min
        self._aug_scale_max = aug_scale_max
        self._skip_crowd = skip_crowd_during_training
        self._max_num_instances = max_num_instances
        self._autoaugment = autoaugment
        self._decoder = TfExampleDecoder(
            include_mask=False, regenerate_source_id=regenerate_source_id
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
            classes = tf.identity(decoded["groundtruth_classes"])
        decoded["groundtruth_classes"] = classes
        if self._is_training:
            return self._parse_train(decoded)
        return self._parse_eval(decoded)

    def _targets(self, boxes, classes):
        cls_targets, box_targets, num_positives = self._labeler.label_anchors(boxes, classes)
        return {
            "cls_targets": cls_targets,
            "box_targets": box_targets,
            "num_positives": num_positives,
        }

    def _parse_train(self, decoded):
        classes = decoded["groundtruth_classes"]
        boxes = decoded["groundtruth_boxes"]
        if self._skip_crowd:
            keep = tf.where(tf.logical_not(decoded["groundtruth_is_crowd"]))[:, 0]
            classes, boxes = tf.gather(classes, keep), tf.gather(boxes, keep)
        image = decoded["image"]
        if self._autoaugment is not None:
            image, boxes = self._autoaugment(image, boxes)
        image = preprocess_ops.normalize_image(image)
        if self._aug_rand_hflip:
            image, boxes, _ = preprocess_ops.random_horizontal_flip(image, boxes)
        image, labels, image_info = self._resize_with_boxes(
            image, boxes, classes, self._aug_scale_min, self._aug_scale_max
        )
        features = {"images": image, "image_info": image_info, "source_ids": decoded["source_id"]}
        return features, labels

    def _resize_with_boxes(self, image, normalized_boxes, classes, scale_min, scale_max):
        image_shape = tf.cast(tf.shape(image)[:2], tf.float32)
        boxes = box_ops.denormalize_boxes(normalized_boxes, image_shape)
        image, image_info = preprocess_ops.resize_and_crop_image(
            image, self._output_size, scale_min, scale_max
        )
        image.set_shape(self._output_size + [3])
        boxes = preprocess_ops.resize_and_crop_boxes(
            boxes, image_info[2], self._output_size, image_info[3]
        )
        keep = preprocess_ops.non_empty_box_indices(boxes)
        boxes, classes = tf.gather(boxes, keep), tf.gather(classes, keep)
        return image, self._targets(boxes, classes), image_info

    def _parse_eval(self, decoded):
        image = preprocess_ops.normalize_image(decoded["image"])
        image, labels, image_info = self._resize_with_boxes(
            image, decoded["groundtruth_boxes"], decoded["groundtruth_classes"], 1.0, 1.0
        )
        labels["groundtruths"] = groundtruths_for_eval(decoded, self._max_num_instances)
        features = {"images": image, "image_info": image_info, "source_ids": decoded["source_id"]}
        return features, labels
