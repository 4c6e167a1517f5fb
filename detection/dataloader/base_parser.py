"""The detection input path every detection parser shares; each model adds only its targets.

    serialized tf.Example -> decode -> class-id check
      train: skip crowds -> augmentation policy (image, boxes, masks; `aug_policy`)
             -> normalize -> flip (image, boxes, masks)
             -> scale jitter + random crop -> resize/pad to `output_size`
             -> boxes to network-input pixels, clipped, empty ones dropped
             -> copy-paste: another image's objects pasted on (when configured)
      eval:  normalize -> resize/pad -> boxes mapped as above
             + the groundtruths the COCO evaluator needs, padded to `max_num_instances`
    -> the model's `_train_labels(instances)` / `_eval_labels(instances)`.

To add a parser: subclass `DetectionParser`, implement the two label methods from the
`Instances` they receive, and register a builder in `detection/dataloader/factory.py`.
"""

import dataclasses

import tensorflow as tf

from detection.dataloader import preprocess_ops
from detection.dataloader.tf_example_decoder import TfExampleDecoder
from detection.ops import boxes as box_ops


@dataclasses.dataclass
class Instances:
    """One preprocessed image and its groundtruth instances (n dynamic, possibly 0).

    Attributes:
      image: [H, W, 3] float32 network input (normalized, padded to `output_size`).
      image_info: [4, 2] float32 (docs/CONVENTIONS.md 'Image info').
      boxes: [n, 4] float32 yxyx in network-input pixels, clipped, non-empty.
      classes: [n] int32.
      masks: [n, h, w] float32 instance masks at the ORIGINAL image resolution, flipped with the
        image (None unless the parser decodes masks); crop them with `original_boxes`.
      original_boxes: [n, 4] the visible part of `boxes` mapped back to original pixels.
      pasted_mask_crops: [k, S, S] float32 mask crops of the last k instances, objects pasted
        by copy-paste (their masks come from another image, already cropped); `masks` then
        covers the first n - k instances only. None without copy-paste.
    """

    image: tf.Tensor
    image_info: tf.Tensor
    boxes: tf.Tensor
    classes: tf.Tensor
    masks: tf.Tensor | None
    original_boxes: tf.Tensor
    pasted_mask_crops: tf.Tensor | None = None


def check_class_ids(classes, num_classes, source_id):
    """Asserts 0 <= class id < num_classes; the error names the image's source_id."""
    classes = tf.cast(classes, tf.int64)
    in_range = tf.reduce_all((classes >= 0) & (classes < num_classes))
    return tf.debugging.Assert(
        in_range,
        [
            f"class id outside [0, architecture.num_classes={num_classes}) in the image with "
            "source_id",
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

    def pad(values, pad_value):
        return preprocess_ops.pad_to_fixed_size(
            values, max_num_instances, pad_value, "groundtruth boxes"
        )

    return {
        "source_id": decoded["source_id"],
        "height": height,
        "width": width,
        "num_detections": tf.minimum(num, max_num_instances),
        "boxes": pad(boxes, -1.0),
        "classes": pad(tf.cast(decoded["groundtruth_classes"], tf.int32), -1),
        "areas": pad(decoded["groundtruth_area"], -1.0),
        "is_crowds": pad(tf.cast(decoded["groundtruth_is_crowd"], tf.int32), 0),
    }


class DetectionParser:
    """Callable `serialized tf.Example -> (features, labels)` for one mode.

    features: `images [H, W, 3] float32`, `image_info [4, 2]`, `source_ids [] int64`.
    labels: what the subclass's `_train_labels` / `_eval_labels` return; in eval plus
    `groundtruths` (see `groundtruths_for_eval`).
    """

    def __init__(
        self,
        output_size,
        num_classes,
        is_training,
        aug_rand_hflip=True,
        aug_scale_min=1.0,
        aug_scale_max=1.0,
        skip_crowd_during_training=True,
        max_num_instances=100,
        include_mask=False,
        regenerate_source_id=False,
        autoaugment=None,
        copy_paste=None,
    ):
        """Builds the parser.

        Args:
          output_size: (height, width) of the network input.
          num_classes: number of classes including background; ids outside [0, num_classes)
            are an error naming the image.
          is_training: training (augmentation, targets) or evaluation (adds groundtruths).
          aug_rand_hflip, aug_scale_min, aug_scale_max: training augmentation.
          skip_crowd_during_training: drop is_crowd instances from the training targets.
          max_num_instances: the padded number of groundtruth instances.
          include_mask: decode instance masks (training only).
          regenerate_source_id: hash the encoded image into a source_id.
          autoaugment: optional augmentation policy applied before the other training
            augmentations: a callable `(uint8 image [h, w, 3], normalized boxes [n, 4],
            masks [n, h, w] or None) -> (image, boxes [m, 4], masks, indices [m])` (an
            `augment.autoaugment` policy or `RandAugment.augment_detection`); the classes of
            the boxes it keeps are gathered with `indices`, masks move with its geometric ops.
          copy_paste: optional `copy_paste.CopyPaste`; training then takes a second argument,
            the objects to paste (`extract_objects_parser` output), and decodes masks.
        """
        self._output_size = [int(output_size[0]), int(output_size[1])]
        self._num_classes = num_classes
        self._is_training = is_training
        self._aug_rand_hflip = aug_rand_hflip
        self._aug_scale_min = aug_scale_min
        self._aug_scale_max = aug_scale_max
        self._skip_crowd = skip_crowd_during_training
        self._max_num_instances = int(max_num_instances)
        self._autoaugment = autoaugment
        self._copy_paste = copy_paste if is_training else None
        # Copy-paste occludes the training image's masks, so it needs them decoded.
        self._include_mask = include_mask or self._copy_paste is not None
        self._decoder = TfExampleDecoder(
            include_mask=self._include_mask and is_training,
            regenerate_source_id=regenerate_source_id,
        )

    def __call__(self, serialized, pasted_objects=None):
        """Parses one record.

        Args:
          serialized: [] string, a serialized tf.Example.
          pasted_objects: with copy-paste in training, the `extract_objects_parser` output of
            another image, whose objects are pasted onto this one.

        Returns:
          (features, labels), see the class docstring.
        """
        if (self._copy_paste is not None) != (pasted_objects is not None):
            raise ValueError(
                "copy-paste parsers take the objects to paste as a second argument, other "
                "parsers only the record; check architecture.pre_parser and copy_paste"
            )
        decoded = self._decoder.decode(serialized)
        check = check_class_ids(
            decoded["groundtruth_classes"], self._num_classes, decoded["source_id"]
        )
        with tf.control_dependencies([check]):
            decoded["groundtruth_classes"] = tf.identity(decoded["groundtruth_classes"])
        if self._is_training:
            instances = self._prepare_train(decoded)
            if self._copy_paste is not None:
                instances = self._copy_paste(instances, pasted_objects)
            labels = self._train_labels(instances)
        else:
            instances = self._prepare_eval(decoded)
            labels = dict(self._eval_labels(instances))
            labels["groundtruths"] = groundtruths_for_eval(decoded, self._max_num_instances)
        features = {
            "images": instances.image,
            "image_info": instances.image_info,
            "source_ids": decoded["source_id"],
        }
        return features, labels

    def _train_labels(self, instances):
        """Training labels of one image from its `Instances`."""
        raise NotImplementedError(f"{type(self).__name__} must implement _train_labels()")

    def _eval_labels(self, instances):
        """Evaluation labels (without `groundtruths`, which the base adds); default none."""
        del instances
        return {}

    def _prepare_train(self, decoded):
        classes = tf.cast(decoded["groundtruth_classes"], tf.int32)
        boxes = decoded["groundtruth_boxes"]
        masks = decoded["groundtruth_instance_masks"] if self._include_mask else None
        if self._skip_crowd:
            keep = tf.where(tf.logical_not(decoded["groundtruth_is_crowd"]))[:, 0]
            classes, boxes = tf.gather(classes, keep), tf.gather(boxes, keep)
            if masks is not None:
                masks = tf.gather(masks, keep)
        image = decoded["image"]
        if self._autoaugment is not None:
            image, boxes, masks, indices = self._autoaugment(image, boxes, masks)
            classes = tf.gather(classes, indices)
        image = preprocess_ops.normalize_image(image)
        if self._aug_rand_hflip:
            image, boxes, masks = preprocess_ops.random_horizontal_flip(image, boxes, masks)
        return self._resize(image, boxes, classes, masks, self._aug_scale_min, self._aug_scale_max)

    def _prepare_eval(self, decoded):
        image = preprocess_ops.normalize_image(decoded["image"])
        classes = tf.cast(decoded["groundtruth_classes"], tf.int32)
        return self._resize(image, decoded["groundtruth_boxes"], classes, None, 1.0, 1.0)

    def _resize(self, image, normalized_boxes, classes, masks, scale_min, scale_max):
        """Resizes/pads the image and maps the boxes; drops boxes left empty by the crop."""
        boxes = box_ops.denormalize_boxes(normalized_boxes, tf.shape(image)[:2])
        image, image_info = preprocess_ops.resize_and_crop_image(
            image, self._output_size, scale_min, scale_max
        )
        image.set_shape(self._output_size + [3])
        boxes = box_ops.clip_boxes(
            box_ops.boxes_to_network_input(boxes, image_info), self._output_size
        )
        keep = preprocess_ops.non_empty_box_indices(boxes)
        boxes, classes = tf.gather(boxes, keep), tf.gather(classes, keep)
        if masks is not None:
            masks = tf.gather(masks, keep)
        return Instances(
            image=image,
            image_info=image_info,
            boxes=boxes,
            classes=classes,
            masks=masks,
            original_boxes=box_ops.boxes_to_original_pixels(boxes, image_info),
        )
