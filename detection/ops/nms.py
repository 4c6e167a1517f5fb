"""Static-shape greedy non-maximum suppression that compiles under XLA.

Greedy NMS keeps the highest-scoring remaining box, drops every remaining box
whose IoU with it is strictly greater than `iou_threshold`, and repeats. Here
each repetition is one step of a `tf.while_loop` over all (batch, class)
problems at once: an argmax over the live scores and one row of IoUs. That is
`max_output_size` steps of `O(num_boxes)` work instead of the `O(num_boxes^2)`
IoU matrix, which matters for 5000 pre-NMS boxes per class. The loop stops
early once no box is left in any problem.

Conventions shared with `tf.image.non_max_suppression`: a box is a candidate
only if its score is strictly greater than `score_threshold`; ties in score are
broken by the lower index. Padded outputs have box 0, score 0 and class 0.
"""

import tensorflow as tf

from detection.ops import boxes as box_ops


def greedy_nms_indices(
    boxes, scores, max_output_size, iou_threshold, score_threshold=float("-inf")
):
    """Greedy NMS on independent problems; indices of the kept boxes.

    Args:
      boxes: [..., N, 4] boxes of each problem.
      scores: [..., N] their scores (need not be sorted).
      max_output_size: Python int, at most this many boxes kept per problem.
      iou_threshold: float; a box is suppressed when its IoU with a kept box is
        greater than this.
      score_threshold: float; only boxes scoring above this are candidates.

    Returns:
      indices: [..., max_output_size] int32 indices into N of the kept boxes in
        descending score order; 0 past `num_valid`.
      num_valid: [...] int32 number of kept boxes.
    """
    boxes = tf.convert_to_tensor(boxes)
    scores = tf.convert_to_tensor(scores)
    box_ops.check_boxes_shape(boxes)
    if scores.shape.rank is None or boxes.shape[:-1] != scores.shape:
        raise ValueError(
            f"scores shape {scores.shape} must equal boxes shape "
            f"{boxes.shape} without its last dimension."
        )
    max_output_size = int(max_output_size)
    if max_output_size < 1:
        raise ValueError(f"max_output_size must be >= 1, got {max_output_size}.")
    outer_shape = tf.shape(scores)[:-1]
    num_boxes = scores.shape[-1]
    if num_boxes is None:
        raise ValueError(f"the number of boxes must be static, got {scores.shape}.")
    flat_boxes = tf.reshape(boxes, [-1, num_boxes, 4])
    flat_scores = tf.reshape(tf.cast(scores, tf.float32), [-1, num_boxes])
    alive = tf.ones_like(flat_scores, tf.bool)
    if score_threshold != float("-inf"):
        alive = flat_scores > score_threshold
    # Removed boxes score below every box: a finite floor instead of -inf, so that no tensor
    # holds an infinity (TFLite's int8 calibration cannot quantize one).
    floor = _score_floor(flat_scores)
    num_problems = tf.shape(flat_scores)[0]
    out_indices = tf.zeros([num_problems, max_output_size], tf.int32)
    num_valid = tf.zeros([num_problems], tf.int32)
    slots = tf.range(max_output_size)

    def _cond(step, alive, *unused):
        return tf.logical_and(step < max_output_size, tf.reduce_any(alive))

    def _body(step, alive, out, num, scores, boxes, floor):
        best = tf.argmax(tf.where(alive, scores, floor), axis=-1, output_type=tf.int32)
        # The best box is alive exactly when any box is (dead ones score `floor`).
        found = tf.gather(alive, best[:, tf.newaxis], batch_dims=1)[:, 0]
        best_box = tf.gather(boxes, best[:, tf.newaxis], batch_dims=1)
        # No division in the loop (box_ops.iou_exceeds says why).
        overlapping = box_ops.iou_exceeds(best_box, boxes, iou_threshold)[:, 0, :]
        # The chosen box always leaves the pool, even with IoU 0 to itself
        # (degenerate boxes), or the loop would pick it again.
        drop = tf.logical_or(
            overlapping, tf.one_hot(best, num_boxes, on_value=True, off_value=False)
        )
        alive = tf.logical_and(alive, tf.logical_not(drop))
        write = tf.logical_and(slots[tf.newaxis, :] == step, found[:, tf.newaxis])
        out = tf.where(write, best[:, tf.newaxis], out)
        num = num + tf.cast(found, tf.int32)
        # Float tensors ride along as loop variables times a 1 the converter cannot fold:
        # TFLite's int8 calibration crashes on loop-invariant float tensors of a WHILE body.
        one = tf.cast(step >= 0, tf.float32)
        return step + 1, alive, out, num, scores * one, boxes * one, floor * one

    _, _, out_indices, num_valid, _, _, _ = tf.while_loop(
        _cond,
        _body,
        (tf.constant(0), alive, out_indices, num_valid, flat_scores, flat_boxes, floor),
        maximum_iterations=max_output_size,
    )
    out_shape = tf.concat([outer_shape, [max_output_size]], axis=0)
    return (tf.reshape(out_indices, out_shape), tf.reshape(num_valid, outer_shape))


def _score_floor(scores):
    """A finite score below every entry of `scores` (scalar)."""
    lowest = tf.reduce_min(scores)
    return lowest - 1.0 - tf.abs(lowest)


def _gather_kept(values, indices, num_valid):
    """Gathers along the box axis and zeroes the padded slots.

    Args:
      values: [P, N] or [P, N, 4].
      indices: [P, K] int32.
      num_valid: [P] int32.

    Returns:
      [P, K] or [P, K, 4].
    """
    kept = tf.gather(values, indices, batch_dims=1)
    valid = tf.range(tf.shape(indices)[-1])[tf.newaxis, :] < num_valid[:, None]
    if kept.shape.rank == 3:
        valid = valid[..., tf.newaxis]
    return tf.where(valid, kept, tf.zeros_like(kept))


def _top_k_candidates(scores, pre_nms_num_boxes):
    """Top `pre_nms_num_boxes` scores along the last axis (static k)."""
    k = min(int(pre_nms_num_boxes), scores.shape[-1])
    if k < 1:
        raise ValueError(
            f"pre_nms_num_boxes must be >= 1, got {pre_nms_num_boxes}"
            f" (with {scores.shape[-1]} boxes)."
        )
    return tf.math.top_k(scores, k=k, sorted=True)


def single_class_nms(
    boxes,
    scores,
    max_output_size,
    iou_threshold,
    score_threshold=float("-inf"),
    pre_nms_num_boxes=None,
):
    """Class-agnostic NMS (e.g. RPN proposals) with padded outputs.

    Args:
      boxes: [batch, N, 4].
      scores: [batch, N].
      max_output_size: Python int K, the padded output size.
      iou_threshold: float, suppress when IoU > this.
      score_threshold: float, candidates score > this.
      pre_nms_num_boxes: None (all N) or Python int; only the top boxes by score
        enter NMS.

    Returns:
      num_valid: [batch] int32.
      nmsed_boxes: [batch, K, 4], descending score, zeros past num_valid.
      nmsed_scores: [batch, K], zeros past num_valid.
    """
    boxes = tf.convert_to_tensor(boxes)
    scores = tf.convert_to_tensor(scores)
    box_ops.check_boxes_shape(boxes)
    if boxes.shape.rank != 3 or scores.shape.rank != 2:
        raise ValueError(
            "single_class_nms expects boxes [batch, N, 4] and scores "
            f"[batch, N], got {boxes.shape} and {scores.shape}."
        )
    top_scores, top_indices = _top_k_candidates(
        scores, scores.shape[-1] if pre_nms_num_boxes is None else pre_nms_num_boxes
    )
    top_boxes = tf.gather(boxes, top_indices, batch_dims=1)
    indices, num_valid = greedy_nms_indices(
        top_boxes, top_scores, max_output_size, iou_threshold, score_threshold
    )
    return (
        num_valid,
        _gather_kept(top_boxes, indices, num_valid),
        _gather_kept(top_scores, indices, num_valid),
    )


def multiclass_nms(
    boxes,
    scores,
    max_total_size,
    iou_threshold,
    score_threshold=float("-inf"),
    pre_nms_num_boxes=5000,
    class_offset=0,
):
    """Per-class NMS, then the best `max_total_size` detections over classes.

    For each class: top `pre_nms_num_boxes` boxes by that class's score, greedy
    NMS keeping up to `max_total_size`; then the kept boxes of all classes are
    merged and the `max_total_size` highest scores returned.

    Args:
      boxes: [batch, N, 4] class-agnostic boxes, or [batch, N, C, 4] (or
        [batch, N, 1, 4]) per-class boxes.
      scores: [batch, N, C].
      max_total_size: Python int K, the padded output size.
      iou_threshold: float, suppress when IoU > this.
      score_threshold: float, candidates score > this.
      pre_nms_num_boxes: Python int, candidates per class before NMS.
      class_offset: Python int added to the class column index of each valid
        detection (1 when column 0 is the first real class after background).

    Returns:
      A dict of `num_detections [batch] int32`, `detection_boxes [batch, K, 4]`,
      `detection_scores [batch, K]`, `detection_classes [batch, K] int32`,
      sorted by descending score; padded entries are 0.
    """
    boxes = tf.convert_to_tensor(boxes)
    scores = tf.convert_to_tensor(scores)
    box_ops.check_boxes_shape(boxes)
    if scores.shape.rank != 3 or boxes.shape.rank not in (3, 4):
        raise ValueError(
            "multiclass_nms expects scores [batch, N, C] and boxes "
            "[batch, N, 4] or [batch, N, C, 4], got "
            f"{scores.shape} and {boxes.shape}."
        )
    num_classes = scores.shape[-1]
    if boxes.shape.rank == 4 and boxes.shape[2] not in (1, num_classes):
        raise ValueError(f"boxes {boxes.shape} must have 1 or {num_classes} classes in axis 2.")
    max_total_size = int(max_total_size)
    batch_size = tf.shape(scores)[0]

    # [batch, C, k] candidates per class.
    class_scores, anchor_indices = _top_k_candidates(
        tf.transpose(scores, [0, 2, 1]), pre_nms_num_boxes
    )
    k = class_scores.shape[-1]
    if boxes.shape.rank == 3 or boxes.shape[2] == 1:
        shared = boxes if boxes.shape.rank == 3 else boxes[:, :, 0, :]
        class_boxes = tf.gather(shared, anchor_indices, batch_dims=1)
    else:
        per_class = tf.transpose(boxes, [0, 2, 1, 3])  # [batch, C, N, 4]
        class_boxes = tf.gather(per_class, anchor_indices, batch_dims=2)

    indices, num_valid = greedy_nms_indices(
        class_boxes, class_scores, max_total_size, iou_threshold, score_threshold
    )
    flat = [-1, max_total_size]
    kept_boxes = _gather_kept(
        tf.reshape(class_boxes, [-1, k, 4]), tf.reshape(indices, flat), tf.reshape(num_valid, [-1])
    )
    kept_scores = tf.gather(
        tf.reshape(class_scores, [-1, k]), tf.reshape(indices, flat), batch_dims=1
    )
    valid = tf.range(max_total_size)[tf.newaxis, :] < tf.reshape(num_valid, [-1, 1])
    # Padded slots rank below every real detection in the merge.
    kept_scores = tf.cast(kept_scores, tf.float32)
    kept_scores = tf.where(valid, kept_scores, _score_floor(kept_scores))

    merged = num_classes * max_total_size
    valid = tf.reshape(valid, [batch_size, merged])
    kept_scores = tf.reshape(kept_scores, [batch_size, merged])
    kept_boxes = tf.reshape(kept_boxes, [batch_size, merged, 4])
    kept_classes = tf.tile(
        tf.repeat(tf.range(num_classes, dtype=tf.int32), max_total_size)[None], [batch_size, 1]
    )
    top_scores, order = tf.math.top_k(kept_scores, k=max_total_size, sorted=True)
    is_valid = tf.gather(valid, order, batch_dims=1)
    detection_boxes = tf.where(
        is_valid[..., tf.newaxis], tf.gather(kept_boxes, order, batch_dims=1), 0.0
    )
    detection_classes = tf.where(
        is_valid, tf.gather(kept_classes, order, batch_dims=1) + class_offset, 0
    )
    return {
        "num_detections": tf.reduce_sum(tf.cast(is_valid, tf.int32), axis=1),
        "detection_boxes": detection_boxes,
        "detection_scores": tf.where(is_valid, top_scores, 0.0),
        "detection_classes": detection_classes,
    }
