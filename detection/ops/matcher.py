"""IoU argmax matching of candidates (anchors, ROIs) to groundtruth rows, static shapes.

The rule of the original framework's ArgMaxMatcher (with `negatives_lower_than_unmatched`):
each candidate takes the groundtruth row of highest IoU (the first on ties) and is

  * matched   (the row index) if that IoU >= match_threshold,
  * ignored   (IGNORED)       if unmatched_threshold <= IoU < match_threshold,
  * negative  (NEGATIVE)      if negative_lower_bound <= IoU < unmatched_threshold,
  * ignored   (IGNORED)       if IoU < negative_lower_bound (ROI sampling's `bg_iou_thresh_lo`).

With `force_match`, every valid row then claims its best candidate (first on ties) whatever the
IoU; when several rows claim the same candidate, the lowest row index wins.

On purpose, unlike the original: invalid rows (padding) never match anything, and a row whose
best IoU is 0 (it overlaps no candidate) claims nothing instead of candidate 0.
"""

import tensorflow as tf

from detection.ops import boxes as box_ops

NEGATIVE = -1
IGNORED = -2


def match_iou(
    iou,
    valid_rows,
    match_threshold,
    unmatched_threshold,
    negative_lower_bound=0.0,
    force_match=False,
):
    """Matches every candidate (column) to a groundtruth row, or marks it negative/ignored.

    Args:
      iou: [..., N, M] IoU of N groundtruth rows with M candidates; N may be dynamic or 0.
      valid_rows: [..., N] bool, False for padding rows.
      match_threshold: IoU >= this matches.
      unmatched_threshold: IoU < this is negative (<= match_threshold).
      negative_lower_bound: IoU < this is ignored rather than negative.
      force_match: every valid row claims its best candidate.

    Returns:
      [..., M] int32: the matched row index >= 0, NEGATIVE or IGNORED.
    """
    iou = tf.convert_to_tensor(iou, tf.float32)
    leading = tf.shape(iou)[:-2]
    num_candidates = iou.shape[-1]
    iou = tf.reshape(iou, tf.concat([[-1], tf.shape(iou)[-2:]], 0))  # [B, N, M]
    valid = tf.reshape(tf.cast(valid_rows, tf.bool), [tf.shape(iou)[0], -1])
    iou = tf.where(valid[:, :, tf.newaxis], iou, -1.0)

    # With N = 0 the max over no rows is the lowest float (and the row is never used).
    best_iou = tf.reduce_max(iou, axis=1)  # [B, M]
    best_row = _first_row_of_max(iou, best_iou)
    # An all-padding column has best IoU -1 (or the lowest float): negative, like any IoU
    # below the thresholds.
    below_lower = (best_iou >= 0.0) & (best_iou < negative_lower_bound)
    matches = tf.where(
        best_iou < unmatched_threshold,
        tf.where(below_lower, IGNORED, NEGATIVE),
        tf.where(best_iou < match_threshold, IGNORED, best_row),
    )
    if force_match:
        claimer = _claimed_by(iou, valid)
        matches = tf.where(claimer >= 0, claimer, matches)
    return tf.reshape(matches, tf.concat([leading, [num_candidates]], 0))


def _first_row_of_max(iou, max_iou):
    """[B, M] int32: the lowest row index n with `iou[:, n, m] == max_iou[:, m]`.

    What `tf.argmax(iou, axis=1)` returns, but several times faster on CPU, where argmax over
    the (short) row axis of an [N, M] matrix is a slow strided reduction; a min over the same
    axis is a fast one. Anchor labelling does this for every anchor of every image.
    """
    rows = tf.range(tf.shape(iou)[1], dtype=tf.int32)[tf.newaxis, :, tf.newaxis]
    is_max = iou == max_iou[:, tf.newaxis, :]
    return tf.reduce_min(tf.where(is_max, rows, tf.shape(iou)[1]), axis=1)


def _claimed_by(iou, valid):
    """[B, M] int32: the lowest valid row whose best candidate is this one, else -1."""
    batch, num_rows, num_candidates = tf.shape(iou)[0], tf.shape(iou)[1], iou.shape[-1]
    best_col = tf.argmax(iou, axis=2, output_type=tf.int32)  # [B, N]
    claims = valid & (tf.reduce_max(iou, axis=2) > 0.0)
    # One segment per (image, candidate), plus a trash segment for rows that claim nothing.
    trash = batch * num_candidates
    segment = tf.where(claims, best_col + tf.range(batch)[:, tf.newaxis] * num_candidates, trash)
    rows = tf.broadcast_to(tf.range(num_rows)[tf.newaxis, :], tf.shape(segment))
    claimer = tf.math.unsorted_segment_min(
        tf.reshape(rows, [-1]), tf.reshape(segment, [-1]), trash + 1
    )[:trash]
    claimer = tf.reshape(claimer, [batch, num_candidates])
    return tf.where(claimer < num_rows, claimer, -1)


def valid_box_rows(boxes, classes):
    """[..., N] bool: rows with class >= 0 and positive height and width (not padding)."""
    heights = boxes[..., 2] - boxes[..., 0]
    widths = boxes[..., 3] - boxes[..., 1]
    return (classes >= 0) & (heights > 0) & (widths > 0)


def match_boxes(
    candidates,
    gt_boxes,
    gt_classes,
    match_threshold,
    unmatched_threshold,
    negative_lower_bound=0.0,
    force_match=False,
):
    """`match_iou` on the IoU of candidate boxes with groundtruth boxes.

    Args:
      candidates: [..., M, 4] anchors or ROIs (or [M, 4] shared by the batch).
      gt_boxes: [..., N, 4] groundtruth boxes, same pixels as the candidates.
      gt_classes: [..., N] int classes; < 0 marks padding.
      match_threshold, unmatched_threshold, negative_lower_bound, force_match: see `match_iou`.

    Returns:
      [..., M] int32 matches (row index, NEGATIVE or IGNORED).
    """
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    valid = valid_box_rows(gt_boxes, tf.cast(gt_classes, tf.int32))
    iou = box_ops.box_iou(gt_boxes, tf.cast(candidates, tf.float32))
    return match_iou(
        iou, valid, match_threshold, unmatched_threshold, negative_lower_bound, force_match
    )


def gather_matched(values, matches, fill_value):
    """Per-candidate values of the matched rows.

    Args:
      values: [..., N, ...] per-row values (N may be 0).
      matches: [..., M] from `match_iou`.
      fill_value: value for unmatched candidates.

    Returns:
      [..., M, ...]: `values[match]` where match >= 0, else `fill_value`.
    """
    values = tf.convert_to_tensor(values)
    batch_dims = matches.shape.rank - 1
    # One extra row makes the gather valid for N = 0; unmatched candidates read it.
    fill_row = tf.fill(
        tf.concat([tf.shape(values)[:batch_dims], [1], tf.shape(values)[batch_dims + 1 :]], 0),
        tf.cast(fill_value, values.dtype),
    )
    rows = tf.concat([values, fill_row], axis=batch_dims)
    safe = tf.where(matches >= 0, matches, tf.shape(values)[batch_dims])
    return tf.gather(rows, safe, axis=batch_dims, batch_dims=batch_dims)
