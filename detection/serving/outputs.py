"""Model-fn predictions -> the serving outputs of each model kind, in original-image terms.

Every formatter takes the PREDICT-mode predictions (docs/CONVENTIONS.md), the batch's
`image_info [b, 4, 2]` and the network input size, and returns the signature's outputs.
"Original image" is the image the signature received: the decoded image for `image_bytes` /
`tf_example`, the uint8 tensor for `image_tensor`, the raw tensor itself for `raw_image_tensor`.
When one batch holds images of several sizes (`image_bytes`, `tf_example`), image-sized outputs
are padded to the largest of them; `image_info[:, 0]` gives each image's own size.
"""

import dataclasses

import tensorflow as tf

from detection.ops import boxes as box_ops
from detection.ops import masks as mask_ops

MASK_THRESHOLD = 0.5
NUM_TOP_CLASSES = 5


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """The export flags that shape the outputs (the original framework's, plus masks).

    Attributes:
      output_image_info: add `image_info [b, 4, 2]`.
      output_normalized_coordinates: boxes divided by the original height / width.
      cast_num_detections_to_float: `num_detections` as float32 (some serving stacks want
        every output float).
      output_full_image_masks: `detection_masks` as binary masks of the whole image
        `[b, K, height, width]` uint8 instead of box-relative probabilities `[b, K, m, m]`.
    """

    output_image_info: bool = True
    output_normalized_coordinates: bool = False
    cast_num_detections_to_float: bool = False
    output_full_image_masks: bool = False


def _largest_original_size(image_info):
    """[2] int32, the largest (height, width) among the batch's original images."""
    return tf.cast(tf.round(tf.reduce_max(image_info[:, 0, :], axis=0)), tf.int32)


def _to_original(boxes, image_info, options, clip):
    original_size = image_info[:, tf.newaxis, 0, :]  # [b, 1, 2]
    boxes = box_ops.boxes_to_original_pixels(boxes, image_info)
    if clip:
        boxes = box_ops.clip_boxes(boxes, original_size)
    if options.output_normalized_coordinates:
        boxes = box_ops.normalize_boxes(boxes, original_size)
    return boxes


def _full_image_masks(masks, boxes, image_info):
    """Box-relative masks [b, K, m, m] over original-pixel boxes -> [b, K, H, W] uint8 {0, 1}."""
    height, width = tf.unstack(_largest_original_size(image_info))
    batch, num = tf.shape(masks)[0], tf.shape(masks)[1]
    flat = mask_ops.paste_instance_masks(
        tf.reshape(masks, [-1, masks.shape[2], masks.shape[3]]),
        tf.reshape(boxes, [-1, 4]),
        height,
        width,
    )
    pasted = tf.reshape(flat, [batch, num, height, width])
    # Pixels beyond an image's own size (padding up to the batch's largest) stay 0.
    sizes = tf.cast(tf.round(image_info[:, 0, :]), tf.int32)
    inside = tf.logical_and(
        tf.range(height)[tf.newaxis, :, tf.newaxis] < sizes[:, 0, tf.newaxis, tf.newaxis],
        tf.range(width)[tf.newaxis, tf.newaxis, :] < sizes[:, 1, tf.newaxis, tf.newaxis],
    )
    binary = tf.logical_and(pasted >= MASK_THRESHOLD, inside[:, tf.newaxis])
    return tf.cast(binary, tf.uint8)


def detection_outputs(predictions, image_info, network_size, options):
    """Detection models (RetinaNet, Mask R-CNN, Cascade, ShapeMask).

    Returns:
      num_detections: [b] int32 (float32 with `cast_num_detections_to_float`); entries past it
        are padding (zeros).
      detection_boxes: [b, K, 4] yxyx in original pixels, clipped to the image (or normalized).
      detection_classes: [b, K] int32 class ids (1..num_classes-1; 0 for padding).
      detection_scores: [b, K] float32.
      image_info: [b, 4, 2] (with `output_image_info`).
      detection_masks: (mask models) [b, K, m, m] float32 probabilities over the box the mask
        spans (`detection_outer_boxes` when present, else `detection_boxes`); or with
        `output_full_image_masks` [b, K, H, W] uint8 binary masks of the original image.
      detection_outer_boxes: (ShapeMask) [b, K, 4], the boxes the masks span, not clipped.
    """
    del network_size
    outputs = {
        "num_detections": predictions["num_detections"],
        "detection_boxes": _to_original(predictions["detection_boxes"], image_info, options, True),
        "detection_classes": tf.cast(predictions["detection_classes"], tf.int32),
        "detection_scores": tf.cast(predictions["detection_scores"], tf.float32),
    }
    if options.cast_num_detections_to_float:
        outputs["num_detections"] = tf.cast(outputs["num_detections"], tf.float32)
    if "detection_masks" in predictions:
        masks = tf.cast(predictions["detection_masks"], tf.float32)
        mask_boxes = predictions.get("detection_outer_boxes", predictions["detection_boxes"])
        if options.output_full_image_masks:
            pixel_boxes = box_ops.boxes_to_original_pixels(mask_boxes, image_info)
            masks = _full_image_masks(masks, pixel_boxes, image_info)
        outputs["detection_masks"] = masks
    if "detection_outer_boxes" in predictions:
        outputs["detection_outer_boxes"] = _to_original(
            predictions["detection_outer_boxes"], image_info, options, False
        )
    return outputs


def classification_outputs(predictions, image_info, network_size, options):
    """Classification models.

    Returns:
      logits: [b, num_classes] float32.
      probabilities: [b, num_classes] softmax of the logits.
      top_classes: [b, k] int32, the k = min(5, num_classes) most probable classes, best first.
      top_probabilities: [b, k] their probabilities.
    """
    del image_info, network_size, options
    logits = tf.cast(predictions["logits"], tf.float32)
    probabilities = tf.nn.softmax(logits, axis=-1)
    top_probabilities, top_classes = tf.math.top_k(
        probabilities, k=min(NUM_TOP_CLASSES, logits.shape[-1])
    )
    return {
        "logits": logits,
        "probabilities": probabilities,
        "top_classes": top_classes,
        "top_probabilities": top_probabilities,
    }


def segmentation_outputs(predictions, image_info, network_size, options):
    """Semantic segmentation models: a label map of each original image.

    From `logits [b, h, w, C]` (at some stride of the network input): resized bilinearly to the
    network input `(H, W)`, cut to the valid region `image_info[:, 1]` (the image without its
    padding), resized bilinearly to the original size `image_info[:, 0]`, argmaxed. From
    `classes [b, H, W]` (class ids at the network input): cut to the valid region and resized
    to the original size by nearest neighbour.

    Returns:
      label_map: [b, height, width] int32 class per original pixel; -1 beyond an image's own
        size when the batch mixes sizes (height, width: the largest original size).
    """
    del options
    network_size = [int(network_size[0]), int(network_size[1])]
    if "logits" in predictions:
        maps = tf.image.resize(tf.cast(predictions["logits"], tf.float32), network_size)
        method = tf.image.ResizeMethod.BILINEAR
    else:
        maps = tf.cast(predictions["classes"], tf.float32)[..., tf.newaxis]
        method = tf.image.ResizeMethod.NEAREST_NEIGHBOR
    height, width = tf.unstack(_largest_original_size(image_info))

    def one(args):
        image_maps, info = args
        valid = tf.cast(tf.round(info[1]), tf.int32)
        original = tf.cast(tf.round(info[0]), tf.int32)
        resized = tf.image.resize(image_maps[: valid[0], : valid[1]], original, method=method)
        if "logits" in predictions:
            labels = tf.argmax(resized, axis=-1, output_type=tf.int32)
        else:
            labels = tf.cast(tf.round(resized[..., 0]), tf.int32)
        return tf.pad(
            labels, [[0, height - original[0]], [0, width - original[1]]], constant_values=-1
        )

    label_map = tf.map_fn(
        one, (maps, image_info), fn_output_signature=tf.TensorSpec([None, None], tf.int32)
    )
    return {"label_map": label_map}
