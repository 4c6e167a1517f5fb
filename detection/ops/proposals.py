"""RPN proposals over a feature pyramid (the original framework's `roi_proposal`), static shapes.

Per level: scores (sigmoid of the logits), boxes decoded from the anchors (weights 1) and
clipped to the image; optional filters (both sides >= min_size_threshold, score >
score_threshold; 0 disables either, as in the original); the pre_nms_top_k best; greedy NMS
keeping at most post_nms_top_k. Then the post_nms_top_k best of all levels, padded with zeros
to exactly post_nms_top_k rows.

All levels run through one batched NMS: each level's candidates are padded to the largest
level's count with -inf scores, so there is one `tf.while_loop` instead of one per level.
"""

import tensorflow as tf

from detection.ops import boxes as box_ops
from detection.ops import nms as nms_ops


def _sorted_levels(rpn_scores, rpn_boxes, anchor_boxes):
    try:
        levels = sorted(rpn_scores, key=int)
    except (TypeError, ValueError) as e:
        raise ValueError(f'rpn_scores keys must be levels like "2", got {list(rpn_scores)}.') from e
    if not levels or set(levels) != set(rpn_boxes) or set(levels) != set(anchor_boxes):
        raise ValueError(
            "rpn_scores, rpn_boxes and anchor_boxes must have the same non-empty levels, got "
            f"{sorted(rpn_scores)}, {sorted(rpn_boxes)} and {sorted(anchor_boxes)}."
        )
    return levels


def _level_candidates(
    scores, deltas, anchors, image_shape, pre_nms_top_k, score_threshold, min_size, apply_sigmoid
):
    """Top-scoring decoded boxes of one level.

    Args:
      scores: [b, h, w, A] logits (or scores).
      deltas: [b, h, w, A * 4].
      anchors: [h, w, A * 4] or [b, h, w, A * 4].
      image_shape: [b, 1, 2] float32.

    Returns:
      (boxes [b, k, 4], scores [b, k]) sorted by descending score, k = min(N, pre_nms_top_k);
      filtered-out boxes have score -inf.
    """
    num_boxes = scores.shape[1] * scores.shape[2] * scores.shape[3]
    if deltas.shape[-1] != 4 * scores.shape[-1]:
        raise ValueError(
            f"rpn boxes {deltas.shape} must have 4 values per anchor of rpn scores {scores.shape}."
        )
    batch = tf.shape(scores)[0]
    scores = tf.reshape(tf.cast(scores, tf.float32), [batch, num_boxes])
    if apply_sigmoid:
        scores = tf.sigmoid(scores)
    deltas = tf.reshape(tf.cast(deltas, tf.float32), [batch, num_boxes, 4])
    anchors = tf.reshape(tf.cast(anchors, tf.float32), [-1, num_boxes, 4])
    boxes = box_ops.clip_boxes(box_ops.decode_boxes(deltas, anchors), image_shape)
    keep = tf.ones_like(scores, tf.bool)
    if min_size > 0.0:
        keep &= (boxes[..., 2] - boxes[..., 0] >= min_size) & (
            boxes[..., 3] - boxes[..., 1] >= min_size
        )
    if score_threshold > 0.0:
        keep &= scores > score_threshold
    scores = tf.where(keep, scores, float("-inf"))
    top_scores, top = tf.math.top_k(scores, k=min(num_boxes, int(pre_nms_top_k)), sorted=True)
    return tf.gather(boxes, top, batch_dims=1), top_scores


def multilevel_proposals(
    rpn_scores,
    rpn_boxes,
    anchor_boxes,
    image_shape,
    pre_nms_top_k,
    post_nms_top_k,
    nms_iou_threshold,
    score_threshold=0.0,
    min_size_threshold=0.0,
    apply_sigmoid=True,
):
    """Proposes ROIs from multilevel RPN outputs (see module docstring for the rule).

    Args:
      rpn_scores: {level: [batch, h, w, A]} logits (scores if apply_sigmoid is False).
      rpn_boxes: {level: [batch, h, w, A * 4]} encoded boxes (weights 1, 1, 1, 1).
      anchor_boxes: {level: [h, w, A * 4]} or {level: [batch, h, w, A * 4]}.
      image_shape: [batch, 2] valid (height, width) of each image in network-input pixels.
      pre_nms_top_k: int, candidates per level entering NMS.
      post_nms_top_k: int, boxes kept per level by NMS and in total.
      nms_iou_threshold: float; a box is suppressed when its IoU with a kept box of its level
        is > this. 0 (or less) disables NMS, as in the original: the best boxes are kept.
      score_threshold: float; when > 0, boxes scoring <= it are dropped.
      min_size_threshold: float; when > 0, clipped boxes with a side < it are dropped.
      apply_sigmoid: bool, pass `rpn_scores` through a sigmoid.

    Returns:
      rois: [batch, post_nms_top_k, 4] yxyx, descending score, zeros past the valid ones.
      roi_scores: [batch, post_nms_top_k], 0 past the valid ones.
    """
    levels = _sorted_levels(rpn_scores, rpn_boxes, anchor_boxes)
    pre_nms_top_k, post_nms_top_k = int(pre_nms_top_k), int(post_nms_top_k)
    if pre_nms_top_k < 1 or post_nms_top_k < 1:
        raise ValueError(
            "roi_proposal rpn_pre_nms_top_k and rpn_post_nms_top_k must be >= 1, got "
            f"{pre_nms_top_k} and {post_nms_top_k}."
        )
    image_shape = tf.cast(image_shape, tf.float32)[:, tf.newaxis, :]
    candidates = [
        _level_candidates(
            tf.convert_to_tensor(rpn_scores[level]),
            tf.convert_to_tensor(rpn_boxes[level]),
            anchor_boxes[level],
            image_shape,
            pre_nms_top_k,
            float(score_threshold),
            float(min_size_threshold),
            apply_sigmoid,
        )
        for level in levels
    ]
    width = max(scores.shape[-1] for _, scores in candidates)
    boxes = tf.stack(
        [tf.pad(b, [[0, 0], [0, width - b.shape[1]], [0, 0]]) for b, _ in candidates], axis=1
    )  # [b, L, K, 4]
    scores = tf.stack(
        [
            tf.pad(s, [[0, 0], [0, width - s.shape[1]]], constant_values=float("-inf"))
            for _, s in candidates
        ],
        axis=1,
    )  # [b, L, K], sorted per level
    per_level = min(post_nms_top_k, width)
    if float(nms_iou_threshold) > 0.0:
        kept, num_kept = nms_ops.greedy_nms_indices(
            boxes, scores, per_level, float(nms_iou_threshold)
        )
        boxes = tf.gather(boxes, kept, batch_dims=2)
        scores = tf.gather(scores, kept, batch_dims=2)
        scores = tf.where(tf.range(per_level) < num_kept[..., tf.newaxis], scores, float("-inf"))
    else:
        boxes, scores = boxes[:, :, :per_level], scores[:, :, :per_level]

    batch = tf.shape(scores)[0]
    scores = tf.reshape(scores, [batch, len(levels) * per_level])
    boxes = tf.reshape(boxes, [batch, len(levels) * per_level, 4])
    top_scores, top = tf.math.top_k(scores, k=min(post_nms_top_k, len(levels) * per_level))
    valid = top_scores > float("-inf")
    rois = tf.where(valid[..., tf.newaxis], tf.gather(boxes, top, batch_dims=1), 0.0)
    roi_scores = tf.where(valid, top_scores, 0.0)
    pad = post_nms_top_k - roi_scores.shape[1]
    return (
        tf.pad(rois, [[0, 0], [0, pad], [0, 0]]),
        tf.pad(roi_scores, [[0, 0], [0, pad]]),
    )
