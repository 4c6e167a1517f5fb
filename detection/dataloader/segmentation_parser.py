"""Semantic segmentation parser: tf.Example -> (features, labels) with static shapes.

A sibling of the detection parsers that shares their resize convention
(`preprocess_ops.resize_and_crop_image`: keep the aspect ratio, scale jitter, random crop, pad
at the bottom/right) and applies the very same geometry to the label map
(`resize_and_crop_label_map`: nearest neighbour, padding = `ignore_label`).

    train: decode -> augmentation hook -> normalize -> random flip (image and label map
           together) -> resize with scale jitter in [aug_scale_min, aug_scale_max] + crop + pad
    eval:  resize_eval true: resize to fit `output_size` (no jitter) + pad;
           resize_eval false (the original default): no resize, pad to `output_size` (images
           larger than it are an error), so the mean IoU is measured at the original pixels.

Output: features `{'images': [H, W, 3] float32, 'image_info': [4, 2]}`,
labels `{'label_map': [H, W] int32}` with `ignore_label` on unlabelled and padded pixels. Label
values other than `ignore_label` must lie in `[0, num_classes)`.
"""

import tensorflow as tf

from detection.dataloader import preprocess_ops
from detection.dataloader.tf_example_decoder import TfExampleSegmentationDecoder


class SegmentationParser:
    """Callable `serialized tf.Example -> (features, labels)` for one mode."""

    def __init__(
        self,
        output_size,
        num_classes,
        is_training,
        resize_eval=False,
        ignore_label=255,
        aug_rand_hflip=True,
        aug_scale_min=1.0,
        aug_scale_max=1.0,
        autoaugment=None,
    ):
        """Builds the parser.

        Args:
          output_size: (height, width) of the network input.
          num_classes: label values must lie in [0, num_classes) or equal `ignore_label`.
          is_training: augment (training) or not (evaluation).
          resize_eval: in evaluation, resize to fit `output_size` instead of only padding.
          ignore_label: label of unlabelled pixels, also given to padding.
          aug_rand_hflip, aug_scale_min, aug_scale_max: training augmentation.
          autoaugment: optional callable (uint8 image [h, w, 3], int32 label map [h, w]) ->
            (image, label map) applied first in training (an augmentation policy's hook; a
            geometric op must move the label map with the image).
        """
        self._output_size = [int(output_size[0]), int(output_size[1])]
        self._num_classes = int(num_classes)
        self._is_training = is_training
        self._resize_eval = resize_eval
        self._ignore_label = int(ignore_label)
        self._aug_rand_hflip = aug_rand_hflip
        self._aug_scale_min = aug_scale_min
        self._aug_scale_max = aug_scale_max
        self._autoaugment = autoaugment
        self._decoder = TfExampleSegmentationDecoder()

    def _check_labels(self, label_map):
        valid = (label_map == self._ignore_label) | (
            (label_map >= 0) & (label_map < self._num_classes)
        )
        return tf.debugging.Assert(
            tf.reduce_all(valid),
            [
                "image/segmentation/class/encoded has values outside [0, architecture.num_classes="
                f"{self._num_classes}) other than segmentation_parser.ignore_label="
                f"{self._ignore_label}; unique values:",
                tf.unique(tf.reshape(label_map, [-1]))[0],
            ],
            summarize=20,
        )

    def _pad_only(self, image, label_map):
        """Pads image and label map to `output_size` without resizing (eval, no resize_eval)."""
        out_h, out_w = self._output_size
        size = tf.shape(image)[:2]
        check = tf.debugging.assert_less_equal(
            size,
            tf.constant([out_h, out_w]),
            message=f"an eval image is larger than segmentation_parser.output_size="
            f"{self._output_size}; raise it or set segmentation_parser.resize_eval: true",
        )
        with tf.control_dependencies([check]):
            image = tf.image.pad_to_bounding_box(image, 0, 0, out_h, out_w)
            label_map = tf.pad(
                label_map,
                [[0, out_h - size[0]], [0, out_w - size[1]]],
                constant_values=self._ignore_label,
            )
        size = tf.cast(size, tf.float32)
        image_info = tf.stack([size, size, tf.ones([2]), tf.zeros([2])])
        label_map.set_shape(self._output_size)
        return image, image_info, label_map

    def __call__(self, serialized):
        decoded = self._decoder.decode(serialized)
        image, label_map = decoded["image"], decoded["label_map"]
        with tf.control_dependencies([self._check_labels(label_map)]):
            label_map = tf.identity(label_map)
        if self._is_training and self._autoaugment is not None:
            image, label_map = self._autoaugment(image, label_map)
        image = preprocess_ops.normalize_image(image)
        if self._is_training and self._aug_rand_hflip:
            image, _, masks = preprocess_ops.random_horizontal_flip(
                image, tf.zeros([0, 4]), label_map[None]
            )
            label_map = masks[0]
        if self._is_training or self._resize_eval:
            scale_min, scale_max = (
                (self._aug_scale_min, self._aug_scale_max) if self._is_training else (1.0, 1.0)
            )
            image, image_info = preprocess_ops.resize_and_crop_image(
                image, self._output_size, scale_min, scale_max
            )
            label_map = preprocess_ops.resize_and_crop_label_map(
                label_map, image_info, self._output_size, self._ignore_label
            )
        else:
            image, image_info, label_map = self._pad_only(image, label_map)
        image.set_shape(self._output_size + [3])
        return {"images": image, "image_info": image_info}, {"label_map": label_map}
