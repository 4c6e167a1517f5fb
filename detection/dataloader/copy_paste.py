"""Simple Copy-Paste (Ghiasi et al. 2021): paste another image's objects onto a training image.

`CopyPaste()(instances, objects)` takes the prepared training image (`base_parser.Instances`,
network input, masks at its original resolution) and the objects of a second image prepared
by `extract_objects_parser` (same network-input geometry), and returns the instances of the
composed image:

  1. Pixels: where a pasted object is, the second image's pixel replaces the training
     image's (a hard paste, as the reference; the paper's optional blur is not applied).
  2. Occlusion: the pasted pixels, mapped back to the training image's original resolution,
     are removed from its instance masks.
  3. Occluded objects (those that lost visible mask pixels): an object with no visible pixel
     left is removed. Otherwise the box around its visible mask pixels is computed, and a box
     edge that moved by more than `box_update_threshold` original pixels takes the mask's
     edge (smaller moves are mask/box annotation mismatch, not occlusion, and keep the
     annotated edge); an object with a moved edge and at most `occluded_area_threshold`
     visible mask pixels (original resolution) is removed too. Thresholds and defaults
     (10 px, 300 px^2) are the reference implementation's; unlike it, objects the paste does
     not touch are never changed.
  4. The pasted objects are appended after the remaining ones; if the total would exceed
     `max_num_instances`, the last pasted objects are neither pasted nor labelled. A pasted
     object that shows no pixel (hidden by another pasted object, or below the network
     input's pixel grid) is not labelled.

Everything is per image inside tf.data with static output shapes once padded by the parser.
"""

import dataclasses

import tensorflow as tf

from detection.dataloader import preprocess_ops
from detection.ops import boxes as box_ops


def _visible_window(image_info):
    """[4] the part of the original image shown in the network input, original pixels."""
    window = tf.concat([tf.zeros([2]), image_info[1]], 0)[None]
    return box_ops.boxes_to_original_pixels(window, image_info)[0]


def _visible(masks, window):
    """[n, h, w] bool: the mask pixels of `masks` [n, h, w] whose centre lies in `window`."""
    shape = tf.shape(masks)
    rows = tf.range(shape[1], dtype=tf.float32) + 0.5
    cols = tf.range(shape[2], dtype=tf.float32) + 0.5
    row_in = (rows > window[0]) & (rows < window[2])
    col_in = (cols > window[1]) & (cols < window[3])
    return (masks > 0.5) & row_in[None, :, None] & col_in[None, None, :]


def _areas(visible):
    return tf.reduce_sum(tf.cast(visible, tf.float32), axis=[1, 2])


def _extents(visible):
    """[n, 4] yxyx pixel edges around the True pixels of `visible` [n, h, w] (any if none)."""
    shape = tf.shape(visible)

    def extent(occupied, size):
        first = tf.argmax(tf.cast(occupied, tf.int32), axis=1, output_type=tf.int32)
        last = size - tf.argmax(
            tf.cast(tf.reverse(occupied, axis=[1]), tf.int32), axis=1, output_type=tf.int32
        )
        return tf.cast(first, tf.float32), tf.cast(last, tf.float32)

    ymin, ymax = extent(tf.reduce_any(visible, axis=2), shape[1])
    xmin, xmax = extent(tf.reduce_any(visible, axis=1), shape[2])
    return tf.stack([ymin, xmin, ymax, xmax], axis=-1)


class CopyPaste:
    """Callable `(Instances, objects dict) -> Instances` (module docstring)."""

    def __init__(self, max_num_instances, box_update_threshold=10.0, occluded_area_threshold=300.0):
        """Builds the op.

        Args:
          max_num_instances: the parser's padded number of instances; pasted objects beyond
            it are dropped (pixels and labels).
          box_update_threshold: original pixels an edge must move to count as occluded.
          occluded_area_threshold: visible mask area (original pixels) below which an
            occluded object is removed.
        """
        self._max_num_instances = int(max_num_instances)
        self._box_update_threshold = float(box_update_threshold)
        self._occluded_area_threshold = float(occluded_area_threshold)

    def __call__(self, instances, objects):
        """Pastes `objects` onto `instances`.

        Args:
          instances: `base_parser.Instances` of the training image, with `masks` [n, h, w].
          objects: the `extract_objects_parser` output of the second image (same output
            size): image [H, W, 3], object_index [H, W], boxes [M, 4], classes [M],
            masks [M, S, S], num_objects [].

        Returns:
          `Instances` of the composed image: the image with the objects pasted, the kept
          training instances first (boxes updated, masks occluded), then the k pasted ones;
          `masks` covers the first ones only and `pasted_mask_crops` [k, S, S] the pasted.
        """
        if instances.masks is None:
            raise ValueError("copy-paste needs the training image's instance masks")
        num_own = tf.shape(instances.classes)[0]
        room = tf.maximum(self._max_num_instances - num_own, 0)
        num_pasted = tf.minimum(tf.cast(objects["num_objects"], tf.int32), room)
        index = objects["object_index"]
        pasted = (index >= 0) & (index < num_pasted)
        image = tf.where(pasted[:, :, None], objects["image"], instances.image)

        # The pasted pixels at the training image's original resolution occlude its masks.
        covered = preprocess_ops.masks_to_original_pixels(pasted, instances.image_info, False)
        masks = instances.masks * tf.cast(tf.logical_not(covered), instances.masks.dtype)
        window = _visible_window(instances.image_info)
        visible = _visible(masks, window)
        areas = _areas(visible)
        # Only objects that lost visible pixels change: a mask that never matched its box
        # exactly is not mistaken for an occluded one.
        hit = areas < _areas(_visible(instances.masks, window))
        extents = _extents(visible)
        moved = hit[:, None] & (
            tf.abs(extents - instances.original_boxes) > self._box_update_threshold
        )
        updated = tf.reduce_any(moved, axis=1)
        boxes = box_ops.clip_boxes(
            box_ops.boxes_to_network_input(
                tf.where(moved, extents, instances.original_boxes), instances.image_info
            ),
            tf.shape(image)[:2],
        )
        boxes = tf.where(updated[:, None], boxes, instances.boxes)
        original_boxes = tf.where(
            updated[:, None],
            box_ops.boxes_to_original_pixels(boxes, instances.image_info),
            instances.original_boxes,
        )
        small = updated & (areas <= self._occluded_area_threshold)
        non_empty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        keep = tf.where(~(hit & ((areas == 0) | small)) & non_empty)[:, 0]

        # A pasted object left without a pixel (hidden by another one, or too small for the
        # network input's grid) is not labelled.
        pixels = tf.math.unsorted_segment_sum(
            tf.reshape(tf.cast(pasted, tf.int32), [-1]),
            tf.reshape(tf.maximum(index, 0), [-1]),
            tf.shape(objects["classes"])[0],
        )
        shown = tf.where(pixels[:num_pasted] > 0)[:, 0]
        pasted_boxes = tf.gather(objects["boxes"], shown)
        return dataclasses.replace(
            instances,
            image=image,
            boxes=tf.concat([tf.gather(boxes, keep), pasted_boxes], 0),
            classes=tf.concat(
                [tf.gather(instances.classes, keep), tf.gather(objects["classes"], shown)], 0
            ),
            masks=tf.gather(masks, keep),
            original_boxes=tf.concat(
                [
                    tf.gather(original_boxes, keep),
                    box_ops.boxes_to_original_pixels(pasted_boxes, instances.image_info),
                ],
                0,
            ),
            pasted_mask_crops=tf.gather(objects["masks"], shown),
        )
