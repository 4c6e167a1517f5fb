"""The objects copy-paste pastes (`architecture.pre_parser: extract_objects_parser`).

Simple Copy-Paste (Ghiasi et al. 2021) pastes a random subset of the objects of one training
image onto another. This parser prepares the objects of the second image exactly as the
training image is prepared (decode, skip crowds, flip, scale jitter and crop to `output_size`:
the large-scale jitter of the paper when `aug_scale_min/max` are 0.1 / 2.0), then draws how
many to paste, m uniform in [1, n] (0 when the image has none), and which (a random subset).

Output (static shapes; M = max_num_instances, S = mask_crop_size, H x W = output_size):
  image: [H, W, 3] float32, the normalized network input of the second image.
  object_index: [H, W] int32, the pasted object (0..m-1) each pixel shows, -1 for none;
    where objects overlap, the lower index wins, so dropping the last objects (when the
    training image has no room left for them) never leaves holes in the ones kept.
  boxes: [M, 4] float32 network-input pixels (-1 padded).
  classes: [M] int32 (-1 padded).
  masks: [M, S, S] float32 crops of each object's mask over its box (-1 padded).
  num_objects: [] int32, m.
"""

import tensorflow as tf

from detection.dataloader import preprocess_ops
from detection.dataloader.base_parser import DetectionParser
from detection.ops import masks as mask_ops


class ExtractObjectsParser(DetectionParser):
    """Callable `serialized tf.Example -> dict` of the objects to paste (module docstring)."""

    def __init__(self, mask_crop_size=112, seed=None, **kwargs):
        """Builds the parser.

        Args:
          mask_crop_size: S, the side of each mask crop (the Mask R-CNN parser's).
          seed: optional op seed of the object sampling.
          **kwargs: `DetectionParser` arguments (output_size, num_classes, scale jitter,
            flip, max_num_instances...); always training, always with masks.
        """
        kwargs.update(is_training=True, include_mask=True, autoaugment=None)
        super().__init__(**kwargs)
        self._mask_crop_size = int(mask_crop_size)
        self._seed = seed

    def __call__(self, serialized):
        features, objects = super().__call__(serialized)
        return dict(objects, image=features["images"])

    def _pad(self, values, pad_value):
        return preprocess_ops.pad_to_fixed_size(
            values, self._max_num_instances, pad_value, "objects to paste"
        )

    def _train_labels(self, instances):
        count = tf.minimum(tf.shape(instances.classes)[0], self._max_num_instances)
        num_objects = tf.random.uniform(
            [], 1, tf.maximum(count, 1) + 1, dtype=tf.int32, seed=self._seed
        )
        num_objects = tf.minimum(num_objects, count)
        chosen = tf.random.shuffle(tf.range(count), seed=self._seed)[:num_objects]
        masks = tf.gather(instances.masks, chosen)
        original_boxes = tf.gather(instances.original_boxes, chosen)
        # Layer 0 is "no object": argmax then picks the first object covering a pixel.
        background = tf.zeros(tf.concat([[1], tf.shape(masks)[1:]], 0), tf.float32)
        layers = tf.concat([background, tf.cast(masks > 0.5, tf.float32)], 0)
        index = tf.cast(tf.argmax(layers, axis=0), tf.int32) - 1
        return {
            "object_index": preprocess_ops.masks_to_network_input(
                index, instances.image_info, self._output_size, fill_value=-1
            ),
            "boxes": self._pad(tf.gather(instances.boxes, chosen), -1.0),
            "classes": self._pad(tf.gather(instances.classes, chosen), -1),
            "masks": self._pad(
                mask_ops.crop_and_resize_masks(masks, original_boxes, self._mask_crop_size),
                -1.0,
            ),
            "num_objects": num_objects,
        }
