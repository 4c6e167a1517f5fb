"""ShapeMask parser: RetinaNet's anchor targets plus sampled instances for the mask branch.

Training labels (K = num_sampled_masks, S = mask_crop_size, u = upsample_factor), on top of
RetinaNet's `cls_targets`, `box_targets`, `num_positives`:
  mask_boxes [K, 4] float32: sampled groundtruth boxes (network-input pixels), jittered like
    noisy detections (`box_jitter_scale`) and clipped to the input;
  mask_outer_boxes [K, 4] float32: each jittered box grown by `outer_box_scale` about its
    centre, clipped: the box every mask of the branch spans;
  mask_classes [K] int32: the sampled instances' classes;
  mask_targets [K, S, S] float32 in {0, 1}: the instance mask over its outer box,
    binarised at 0.5;
  fine_mask_targets [K, S * u, S * u] float32 in {0, 1}: the same at the fine resolution;
  mask_is_valid [K] int32: 1 where the sample trains the mask branch: the image has instances
    and the instance's class is in `mask_train_class` (the partially supervised setting).
Sampling follows the original: a random permutation of max(n, K) slots, taken modulo n, so
every instance is drawn at least once when n <= K and none twice when n >= K; an image without
instances yields K all-zero samples with mask_is_valid 0.

Evaluation labels: RetinaNet's targets (for eval losses), plus `groundtruths`.

With `use_category: false` every instance is class 1, for the detector and the mask branch
alike (the original's class-agnostic mode); `mask_train_class` still reads the dataset's
classes.
"""

import dataclasses

import tensorflow as tf

from detection.dataloader.retinanet_parser import RetinaNetParser
from detection.ops import boxes as box_ops
from detection.ops import masks as mask_ops
from detection.ops.anchors import Anchors


def mask_targets_over_boxes(masks, boxes, image_info, size):
    """Binary masks over boxes of the network input, cut from original-resolution masks.

    Args:
      masks: [K, h, w] float32 instance masks at the original image resolution.
      boxes: [K, 4] yxyx boxes in network-input pixels (the outer boxes).
      image_info: [4, 2] (docs/CONVENTIONS.md 'Image info').
      size: int, the output side.

    Returns:
      [K, size, size] float32 in {0, 1}: the bilinear crop of each mask over its box mapped
      back to original pixels (`crop_and_resize_masks` geometry), thresholded at 0.5 as the
      original framework did.
    """
    original_boxes = box_ops.boxes_to_original_pixels(boxes, image_info)
    crops = mask_ops.crop_and_resize_masks(masks, original_boxes, size)
    return tf.cast(crops >= 0.5, tf.float32)


class ShapeMaskParser(RetinaNetParser):
    """Callable `serialized tf.Example -> (features, labels)` for one mode."""

    def __init__(
        self,
        anchors: Anchors,
        match_threshold=0.5,
        unmatched_threshold=0.5,
        use_category=True,
        outer_box_scale=1.25,
        box_jitter_scale=0.025,
        num_sampled_masks=8,
        mask_crop_size=32,
        upsample_factor=4,
        mask_train_class_ids=None,
        seed=None,
        **kwargs,
    ):
        """Builds the parser.

        Args:
          anchors: the Anchors for `output_size`.
          match_threshold, unmatched_threshold: IoU bounds of positive / negative anchors.
          use_category: False makes every instance class 1 (one foreground class).
          outer_box_scale: >= 1, outer box side / jittered box side.
          box_jitter_scale: >= 0, standard deviation of the relative box noise.
          num_sampled_masks: K >= 1, instances sampled per image for the mask branch.
          mask_crop_size: S >= 1, side of `mask_targets`.
          upsample_factor: u >= 1, `fine_mask_targets` have side S * u.
          mask_train_class_ids: None (every class trains masks) or the class ids whose masks
            train.
          seed: optional op seed of the sampling and the jitter.
          **kwargs: `DetectionParser` arguments (output_size, num_classes, is_training,
            augmentation, max_num_instances...).

        Raises:
          ValueError: a value out of range, naming it.
        """
        super().__init__(anchors, match_threshold, unmatched_threshold, include_mask=True, **kwargs)
        for name, value, low in (
            ("num_sampled_masks", num_sampled_masks, 1),
            ("mask_crop_size", mask_crop_size, 1),
            ("upsample_factor", upsample_factor, 1),
        ):
            if int(value) != value or value < low:
                raise ValueError(
                    f"shapemask_parser.{name} must be an integer >= {low}, got {value}"
                )
        if outer_box_scale < 1.0:
            raise ValueError(
                f"shapemask_parser.outer_box_scale must be >= 1, got {outer_box_scale}"
            )
        if box_jitter_scale < 0.0:
            raise ValueError(
                f"shapemask_parser.box_jitter_scale must be >= 0, got {box_jitter_scale}"
            )
        self._use_category = bool(use_category)
        self._outer_box_scale = float(outer_box_scale)
        self._box_jitter_scale = float(box_jitter_scale)
        self._num_sampled_masks = int(num_sampled_masks)
        self._mask_crop_size = int(mask_crop_size)
        self._upsample_factor = int(upsample_factor)
        self._mask_train_class_ids = (
            None if mask_train_class_ids is None else tuple(int(c) for c in mask_train_class_ids)
        )
        self._seed = seed

    def _detector_classes(self, classes):
        if self._use_category:
            return classes
        return tf.where(classes > 0, 1, classes)

    def _eval_labels(self, instances):
        classes = self._detector_classes(instances.classes)
        return self._targets(dataclasses.replace(instances, classes=classes))

    def _train_labels(self, instances):
        classes = self._detector_classes(instances.classes)
        labels = self._targets(dataclasses.replace(instances, classes=classes))
        labels.update(self._mask_labels(instances, classes))
        return labels

    def _sample_indices(self, num_instances):
        """[K] rows to sample: instance rows, or row `num_instances` (a zero row) if none."""
        k = self._num_sampled_masks
        slots = tf.random.shuffle(tf.range(tf.maximum(num_instances, k)), seed=self._seed)[:k]
        slots.set_shape([k])
        return tf.where(num_instances > 0, slots % tf.maximum(num_instances, 1), num_instances)

    def _mask_labels(self, instances, classes):
        num_instances = tf.shape(instances.boxes)[0]
        indices = self._sample_indices(num_instances)

        def sample(values):
            # One zero row after the instances: what an image without instances samples.
            zeros = tf.zeros(tf.concat([[1], tf.shape(values)[1:]], 0), values.dtype)
            return tf.gather(tf.concat([values, zeros], 0), indices)

        boxes = sample(instances.boxes)
        masks = sample(instances.masks)
        sampled_classes = sample(classes)
        dataset_classes = sample(instances.classes)
        boxes.set_shape([self._num_sampled_masks, 4])

        jittered = box_ops.clip_boxes(
            box_ops.jitter_boxes(boxes, self._box_jitter_scale, seed=self._seed),
            self._output_size,
        )
        outer = box_ops.outer_boxes(jittered, self._outer_box_scale, self._output_size)
        size = self._mask_crop_size
        valid = tf.fill([self._num_sampled_masks], num_instances > 0)
        if self._mask_train_class_ids is not None:
            in_split = tf.reduce_any(
                dataset_classes[:, tf.newaxis]
                == tf.constant(self._mask_train_class_ids, tf.int32)[tf.newaxis, :],
                axis=1,
            )
            valid = valid & in_split
        return {
            "mask_boxes": jittered,
            "mask_outer_boxes": outer,
            "mask_classes": tf.cast(sampled_classes, tf.int32),
            "mask_targets": mask_targets_over_boxes(masks, outer, instances.image_info, size),
            "fine_mask_targets": mask_targets_over_boxes(
                masks, outer, instances.image_info, size * self._upsample_factor
            ),
            "mask_is_valid": tf.cast(valid, tf.int32),
        }
