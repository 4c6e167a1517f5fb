"""Box operations: IoU, Faster R-CNN box coder, clipping, normalization.

Convention (see docs/CONVENTIONS.md): boxes are `[ymin, xmin, ymax, xmax]` in
absolute pixels unless a name says `normalized`, with continuous coordinates
and no `+1` pixel offsets: a box's height is `ymax - ymin`, and an image of
size `[H, W]` spans `[0, H] x [0, W]`.

All functions are pure, keep static shapes and compile under
`tf.function(jit_compile=True)`.
"""

import math

import numpy as np
import tensorflow as tf

# Largest log-scale change allowed when decoding, as in the original framework:
# keeps exp() from overflowing on wild regression outputs (1000 px from 16 px).
BBOX_XFORM_CLIP = math.log(1000.0 / 16.0)

# Added to heights and widths before log() when encoding, so a degenerate box
# gives a large finite target instead of -inf (as the original box coder).
_ENCODE_EPSILON = 1e-8


def check_boxes_shape(boxes, name="boxes"):
    """Raises ValueError unless the last dimension of `boxes` is 4."""
    last = boxes.shape[-1] if boxes.shape.rank else None
    if last != 4:
        raise ValueError(
            f"{name} must have last dimension 4 "
            f"([ymin, xmin, ymax, xmax]), got shape {boxes.shape}."
        )


def _split_image_shape(image_shape, dtype):
    """Returns (height, width) broadcastable against `[..., 1]` box columns."""
    if (
        isinstance(image_shape, (list, tuple))
        and len(image_shape) == 2
        and all(np.ndim(v) == 0 for v in image_shape)
    ):
        return (tf.cast(image_shape[0], dtype), tf.cast(image_shape[1], dtype))
    image_shape = tf.cast(tf.convert_to_tensor(image_shape), dtype)
    if image_shape.shape[-1] != 2:
        raise ValueError(
            "image_shape must have last dimension 2 ([height, width]),"
            f" got shape {image_shape.shape}."
        )
    return image_shape[..., 0:1], image_shape[..., 1:2]


def _per_coordinate(boxes, image_shape):
    """Returns [height, width, height, width] broadcast to the shape of boxes."""
    height, width = _split_image_shape(image_shape, boxes.dtype)
    ones = tf.ones_like(boxes[..., :1])
    return tf.concat([ones * v for v in (height, width, height, width)], axis=-1)


def box_areas(boxes):
    """Areas of boxes; boxes with non-positive height or width have area 0.

    Args:
      boxes: [..., 4].

    Returns:
      [...] areas, same dtype as `boxes`.
    """
    boxes = tf.convert_to_tensor(boxes)
    check_boxes_shape(boxes)
    heights = tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    widths = tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return heights * widths


def box_intersections_and_unions(boxes1, boxes2):
    """Pairwise intersection and union areas, batched over leading dimensions.

    Degenerate boxes (non-positive height or width, e.g. the `-1` padding rows) have area 0,
    so their intersection with any box is 0 (and so may be their union).

    Args:
      boxes1: [..., N, 4].
      boxes2: [..., M, 4]; leading dimensions broadcast against `boxes1`'s.

    Returns:
      (intersections, unions), each [..., N, M], >= 0; intersection > 0 implies union > 0.
    """
    boxes1 = tf.convert_to_tensor(boxes1)
    boxes2 = tf.convert_to_tensor(boxes2, dtype=boxes1.dtype)
    check_boxes_shape(boxes1, "boxes1")
    check_boxes_shape(boxes2, "boxes2")
    b1 = boxes1[..., :, tf.newaxis, :]
    b2 = boxes2[..., tf.newaxis, :, :]
    inter_h = tf.maximum(
        tf.minimum(b1[..., 2], b2[..., 2]) - tf.maximum(b1[..., 0], b2[..., 0]), 0.0
    )
    inter_w = tf.maximum(
        tf.minimum(b1[..., 3], b2[..., 3]) - tf.maximum(b1[..., 1], b2[..., 1]), 0.0
    )
    intersection = inter_h * inter_w
    union = (
        box_areas(boxes1)[..., :, tf.newaxis] + box_areas(boxes2)[..., tf.newaxis, :] - intersection
    )
    return intersection, union


def box_iou(boxes1, boxes2):
    """Pairwise intersection-over-union, batched over leading dimensions.

    Degenerate boxes (non-positive height or width, e.g. the `-1` padding rows)
    have area 0 and so IoU 0 with every box, including themselves.

    Args:
      boxes1: [..., N, 4].
      boxes2: [..., M, 4]; leading dimensions broadcast against `boxes1`'s.

    Returns:
      [..., N, M] IoU in [0, 1].
    """
    intersection, union = box_intersections_and_unions(boxes1, boxes2)
    # A zero union has a zero intersection, whose IoU is 0: what divide_no_nan gives, in one
    # op instead of a guarded division (anchor labelling computes this for every anchor).
    return tf.math.divide_no_nan(intersection, union)


def iou_exceeds(boxes1, boxes2, threshold):
    """Pairwise `IoU > threshold` without a division.

    `intersection > threshold * union` decides as `box_iou(...) > threshold` does for a
    threshold >= 0 (a degenerate pair, intersection 0, never exceeds it), but has no division
    that a zero union could break: TFLite's int8 quantization of the NMS loop rounds small
    unions (and the `where` guard's 1) to 0, and its DIV kernel then fails at run time.

    Args:
      boxes1: [..., N, 4].
      boxes2: [..., M, 4]; leading dimensions broadcast against `boxes1`'s.
      threshold: float >= 0.

    Returns:
      [..., N, M] bool.
    """
    intersection, union = box_intersections_and_unions(boxes1, boxes2)
    return intersection > threshold * union


def _centers_and_sizes(boxes):
    """Returns (centers [..., 2] as (y, x), sizes [..., 2] as (height, width)).

    y and x go through the same ops side by side: half as many ops as one column each, which
    is what the coder costs in the input pipeline (every anchor, every image).
    """
    sizes = boxes[..., 2:] - boxes[..., :2]
    return boxes[..., :2] + 0.5 * sizes, sizes


def _center_and_size_columns(boxes):
    """Returns (y_center, x_center, height, width), each [..., 1]."""
    return tf.split(tf.concat(_centers_and_sizes(boxes), axis=-1), 4, axis=-1)


def _check_weights(weights):
    if weights is not None and len(weights) != 4:
        raise ValueError(f"weights must be 4 numbers (y, x, h, w), got {weights}.")


def encode_boxes(boxes, anchors, weights=None):
    """Encodes boxes relative to anchors (Faster R-CNN box coder).

    Targets are `[ty, tx, th, tw] * weights` with `ty = (y_c - ya_c) / ha`,
    `tx = (x_c - xa_c) / wa`, `th = log(h / ha)`, `tw = log(w / wa)`.

    Args:
      boxes: [..., 4] boxes to encode.
      anchors: [..., 4] anchors, broadcastable to `boxes`.
      weights: None (all ones) or 4 floats scaling (ty, tx, th, tw); RetinaNet
        and RPN use (1, 1, 1, 1), the Fast R-CNN head (10, 10, 5, 5).

    Returns:
      [..., 4] encoded targets in the dtype of `anchors`.
    """
    anchors = tf.convert_to_tensor(anchors)
    boxes = tf.cast(boxes, anchors.dtype)
    check_boxes_shape(boxes)
    check_boxes_shape(anchors, "anchors")
    _check_weights(weights)
    centers, sizes = _centers_and_sizes(boxes)
    anchor_centers, anchor_sizes = _centers_and_sizes(anchors)
    sizes = sizes + _ENCODE_EPSILON
    anchor_sizes = anchor_sizes + _ENCODE_EPSILON
    encoded = tf.concat(
        [(centers - anchor_centers) / anchor_sizes, tf.math.log(sizes / anchor_sizes)], axis=-1
    )
    if weights is not None:
        encoded = encoded * tf.constant([float(wt) for wt in weights], encoded.dtype)
    return encoded


def decode_boxes(encoded_boxes, anchors, weights=None):
    """Inverse of `encode_boxes`; log-scale deltas are clipped at log(1000/16).

    Args:
      encoded_boxes: [..., 4] `[ty, tx, th, tw] * weights`.
      anchors: [..., 4] anchors, broadcastable to `encoded_boxes`.
      weights: None or the 4 floats used at encoding.

    Returns:
      [..., 4] boxes `[ymin, xmin, ymax, xmax]` in the dtype of `anchors`.
    """
    anchors = tf.convert_to_tensor(anchors)
    encoded_boxes = tf.cast(encoded_boxes, anchors.dtype)
    check_boxes_shape(encoded_boxes, "encoded_boxes")
    check_boxes_shape(anchors, "anchors")
    _check_weights(weights)
    dy, dx, dh, dw = [encoded_boxes[..., i : i + 1] for i in range(4)]
    if weights is not None:
        dy, dx, dh, dw = [t / float(wt) for t, wt in zip((dy, dx, dh, dw), weights)]
    dh = tf.minimum(dh, BBOX_XFORM_CLIP)
    dw = tf.minimum(dw, BBOX_XFORM_CLIP)
    ya_c, xa_c, ha, wa = _center_and_size_columns(anchors)
    y_c = dy * ha + ya_c
    x_c = dx * wa + xa_c
    half_h = 0.5 * tf.exp(dh) * ha
    half_w = 0.5 * tf.exp(dw) * wa
    return tf.concat([y_c - half_h, x_c - half_w, y_c + half_h, x_c + half_w], axis=-1)


def clip_boxes(boxes, image_shape):
    """Clips boxes to the image `[0, height] x [0, width]`.

    Args:
      boxes: [..., 4].
      image_shape: (height, width) Python numbers, or a tensor [..., 2] whose
        leading dimensions broadcast against `boxes`' (e.g. [batch, 1, 2] for
        boxes [batch, N, 4], or [2]).

    Returns:
      [..., 4] clipped boxes.
    """
    boxes = tf.convert_to_tensor(boxes)
    check_boxes_shape(boxes)
    upper = _per_coordinate(boxes, image_shape)
    return tf.maximum(tf.minimum(boxes, upper), 0.0)


def normalize_boxes(boxes, image_shape):
    """Divides y by height and x by width.

    Args:
      boxes: [..., 4] in pixels.
      image_shape: as in `clip_boxes`.

    Returns:
      [..., 4] normalized boxes.
    """
    boxes = tf.convert_to_tensor(boxes)
    check_boxes_shape(boxes)
    scale = _per_coordinate(boxes, image_shape)
    return boxes / scale


def denormalize_boxes(boxes, image_shape):
    """Multiplies normalized y by height and x by width.

    Args:
      boxes: [..., 4] normalized.
      image_shape: as in `clip_boxes`.

    Returns:
      [..., 4] boxes in pixels.
    """
    boxes = tf.convert_to_tensor(boxes)
    check_boxes_shape(boxes)
    scale = _per_coordinate(boxes, image_shape)
    return boxes * scale


def _is_numpy(*values):
    return all(isinstance(v, np.ndarray) for v in values)


def _scale_and_offset(image_info, dtype_of):
    """(scale, offset), each [..., 1, 4] (y, x, y, x), from image_info [..., 4, 2]."""
    if _is_numpy(image_info):
        info = np.asarray(image_info, dtype_of.dtype)
        scale, offset = info[..., 2:3, :], info[..., 3:4, :]
        return np.concatenate([scale, scale], -1), np.concatenate([offset, offset], -1)
    info = tf.cast(image_info, dtype_of.dtype)
    scale, offset = info[..., 2:3, :], info[..., 3:4, :]
    return tf.concat([scale, scale], -1), tf.concat([offset, offset], -1)


def boxes_to_network_input(boxes, image_info):
    """Maps boxes in original-image pixels into the network input: `box * scale - offset`.

    Args:
      boxes: [..., K, 4] yxyx, original pixels (NumPy array or tensor).
      image_info: [..., 4, 2] (docs/CONVENTIONS.md 'Image info'); rows 2 and 3 are the (y, x)
        scale and offset. Its leading dimensions are those of `boxes` without K.

    Returns:
      [..., K, 4] yxyx in network-input pixels, not clipped; NumPy in, NumPy out.
    """
    if not _is_numpy(boxes, image_info):
        boxes = tf.convert_to_tensor(boxes)
    scale, offset = _scale_and_offset(image_info, boxes)
    return boxes * scale - offset


def boxes_to_original_pixels(boxes, image_info):
    """Inverse of `boxes_to_network_input`: `(box + offset) / scale`.

    Args:
      boxes: [..., K, 4] yxyx in network-input pixels (NumPy array or tensor).
      image_info: [..., 4, 2] as in `boxes_to_network_input`.

    Returns:
      [..., K, 4] yxyx in original-image pixels; NumPy in, NumPy out.
    """
    if not _is_numpy(boxes, image_info):
        boxes = tf.convert_to_tensor(boxes)
    scale, offset = _scale_and_offset(image_info, boxes)
    return (boxes + offset) / scale


def _boxes_and_stack(boxes):
    """(boxes as a NumPy array or tensor, the matching stack function); checks [..., 4]."""
    stack = np.stack if isinstance(boxes, np.ndarray) else tf.stack
    if not isinstance(boxes, np.ndarray):
        boxes = tf.convert_to_tensor(boxes)
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have last dimension 4, got {boxes.shape}.")
    return boxes, stack


def yxyx_to_xywh(boxes):
    """Converts `[ymin, xmin, ymax, xmax]` to COCO `[xmin, ymin, width, height]`.

    Args:
      boxes: [..., 4] NumPy array or tensor.

    Returns:
      [..., 4] of the same kind (NumPy in, NumPy out).
    """
    boxes, stack = _boxes_and_stack(boxes)
    return stack(
        [
            boxes[..., 1],
            boxes[..., 0],
            boxes[..., 3] - boxes[..., 1],
            boxes[..., 2] - boxes[..., 0],
        ],
        axis=-1,
    )


def xywh_to_yxyx(boxes):
    """Converts COCO `[xmin, ymin, width, height]` to `[ymin, xmin, ymax, xmax]`.

    Args:
      boxes: [..., 4] NumPy array or tensor.

    Returns:
      [..., 4] of the same kind (NumPy in, NumPy out).
    """
    boxes, stack = _boxes_and_stack(boxes)
    return stack(
        [
            boxes[..., 1],
            boxes[..., 0],
            boxes[..., 1] + boxes[..., 3],
            boxes[..., 0] + boxes[..., 2],
        ],
        axis=-1,
    )


def jitter_boxes_with_noise(boxes, noise):
    """Moves and rescales boxes by given noise (the deterministic part of `jitter_boxes`).

    With `noise = [n_x, n_y, n_w, n_h]` (the order of the original framework's jitter), the
    centre moves by `(n_y * height, n_x * width)` and the sides scale by `exp(n_h)`,
    `exp(n_w)`: relative noise, so a small and a large box are disturbed alike.

    Args:
      boxes: [..., 4] yxyx.
      noise: [..., 4] broadcastable to `boxes`.

    Returns:
      [..., 4] yxyx, not clipped.
    """
    boxes = tf.convert_to_tensor(boxes)
    check_boxes_shape(boxes)
    noise = tf.cast(noise, boxes.dtype)
    y_c, x_c, height, width = _center_and_size_columns(boxes)
    x_c = x_c + noise[..., 0:1] * width
    y_c = y_c + noise[..., 1:2] * height
    half_w = 0.5 * width * tf.exp(noise[..., 2:3])
    half_h = 0.5 * height * tf.exp(noise[..., 3:4])
    return tf.concat([y_c - half_h, x_c - half_w, y_c + half_h, x_c + half_w], axis=-1)


def jitter_boxes(boxes, noise_scale, seed=None):
    """Boxes disturbed like noisy detections (ShapeMask's `box_jitter_scale`).

    The noise is normal with standard deviation `noise_scale` (0.025 in the original's
    defaults); see `jitter_boxes_with_noise` for how it moves the boxes.

    Args:
      boxes: [..., 4] yxyx with a static shape.
      noise_scale: float >= 0.
      seed: optional op seed.

    Returns:
      [..., 4] yxyx, not clipped.
    """
    if noise_scale < 0.0:
        raise ValueError(f"box jitter noise_scale must be >= 0, got {noise_scale}.")
    boxes = tf.convert_to_tensor(boxes)
    noise = tf.random.normal(tf.shape(boxes), stddev=noise_scale, dtype=boxes.dtype, seed=seed)
    return jitter_boxes_with_noise(boxes, noise)


def outer_boxes(boxes, scale, image_shape):
    """Boxes grown by `scale` about their centres, clipped to the image (ShapeMask's outer boxes).

    ShapeMask predicts each mask over such a box, so a mask can reach past a slightly too
    small detection box.

    Args:
      boxes: [..., 4] yxyx.
      scale: float >= 1 (`outer_box_scale`), the factor on height and width.
      image_shape: as in `clip_boxes`.

    Returns:
      [..., 4] yxyx inside `[0, height] x [0, width]`.
    """
    if scale < 1.0:
        raise ValueError(f"outer_box_scale must be >= 1, got {scale}.")
    boxes = tf.convert_to_tensor(boxes)
    check_boxes_shape(boxes)
    centers, sizes = _centers_and_sizes(boxes)
    half_sizes = 0.5 * scale * sizes
    grown = tf.concat([centers - half_sizes, centers + half_sizes], axis=-1)
    return clip_boxes(grown, image_shape)
