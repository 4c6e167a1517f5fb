"""Training targets for anchors: argmax matching, RetinaNet and RPN labels.

Matching follows the original framework's ArgMaxMatcher with
`negatives_lower_than_unmatched=True` and `force_match_for_each_row=True`:
each anchor takes the groundtruth box of highest IoU (the first on ties) and is
  * matched   if that IoU >= match_threshold,
  * ignored   if unmatched_threshold <= IoU < match_threshold,
  * negative  if IoU < unmatched_threshold;
then every groundtruth box claims its best anchor (first on ties) whatever the
IoU; when several boxes claim the same anchor, the lowest box index wins.

Differences from the original, on purpose: groundtruth rows with class < 0
(padding) or non-positive height/width never match anything, and a box whose
best IoU is 0 (outside all anchors) claims nothing instead of anchor 0.
Everything runs with a dynamic number of boxes N (including 0) in tf.data and
gives static output shapes.
"""

import tensorflow as tf

from detection.ops import boxes as box_ops

# Match results, as in the original framework.
_NEGATIVE = -1
_IGNORED = -2


def _valid_rows(gt_boxes, gt_classes):
    heights = gt_boxes[:, 2] - gt_boxes[:, 0]
    widths = gt_boxes[:, 3] - gt_boxes[:, 1]
    return (gt_classes >= 0) & (heights > 0) & (widths > 0)


def match_anchors(anchor_boxes, gt_boxes, gt_classes, match_threshold, unmatched_threshold):
    """Matches every anchor to a groundtruth row, or marks it negative/ignored.

    Args:
      anchor_boxes: [M, 4] float32 anchors.
      gt_boxes: [N, 4] groundtruth boxes in pixels, N may be dynamic or 0.
      gt_classes: [N] int groundtruth classes; < 0 marks padding.
      match_threshold: float, IoU >= this matches.
      unmatched_threshold: float, IoU < this is negative.

    Returns:
      [M] int32: the matched row index >= 0, -1 (negative) or -2 (ignored).
    """
    gt_boxes = tf.cast(tf.reshape(gt_boxes, [-1, 4]), tf.float32)
    gt_classes = tf.reshape(tf.cast(gt_classes, tf.int32), [-1])
    num_anchors = anchor_boxes.shape[0]
    # A sentinel row of IoU -1 keeps argmax/max defined when N is 0 and is
    # always negative (-1 < any threshold >= 0).
    valid = tf.concat([_valid_rows(gt_boxes, gt_classes), [False]], axis=0)
    rows = tf.concat([gt_boxes, tf.zeros([1, 4])], axis=0)
    iou = box_ops.box_iou(rows, anchor_boxes)  # [N + 1, M]
    iou = tf.where(valid[:, tf.newaxis], iou, -1.0)

    best_row = tf.argmax(iou, axis=0, output_type=tf.int32)
    best_iou = tf.reduce_max(iou, axis=0)
    matches = tf.where(
        best_iou < unmatched_threshold,
        _NEGATIVE,
        tf.where(best_iou < match_threshold, _IGNORED, best_row),
    )

    # Force match: each valid row with any overlap claims its best anchor; the
    # smallest row index wins a contested anchor (segment min).
    best_col = tf.argmax(iou, axis=1, output_type=tf.int32)
    claims = valid & (tf.reduce_max(iou, axis=1) > 0.0)
    segment = tf.where(claims, best_col, num_anchors)  # unclaimed: dropped
    row_ids = tf.range(tf.shape(iou)[0], dtype=tf.int32)
    claimer = tf.math.unsorted_segment_min(row_ids, segment, num_anchors + 1)
    claimer = claimer[:num_anchors]
    forced = claimer < tf.shape(iou)[0]
    return tf.where(forced, claimer, matches)


class AnchorLabeler:
    """RetinaNet targets: per-anchor classes and box regression targets."""

    def __init__(self, anchors, match_threshold=0.5, unmatched_threshold=0.5):
        """Builds the labeler.

        Args:
          anchors: a `detection.dataloader.anchors.Anchors`.
          match_threshold: float, IoU >= this is a positive.
          unmatched_threshold: float <= match_threshold, IoU < this is a negative.
        """
        if not 0.0 <= unmatched_threshold <= match_threshold <= 1.0:
            raise ValueError(
                "need 0 <= unmatched_threshold <= match_threshold <= 1,"
                f" got match_threshold={match_threshold}, "
                f"unmatched_threshold={unmatched_threshold}."
            )
        self._anchors = anchors
        self._match_threshold = float(match_threshold)
        self._unmatched_threshold = float(unmatched_threshold)

    def _match_and_encode(self, gt_boxes, gt_classes):
        """Returns (matches [M], box_targets [M, 4], gt_classes [N])."""
        gt_boxes = tf.convert_to_tensor(gt_boxes)
        box_ops.check_boxes_shape(gt_boxes, "gt_boxes")
        gt_boxes = tf.cast(tf.reshape(gt_boxes, [-1, 4]), tf.float32)
        gt_classes = tf.reshape(tf.cast(gt_classes, tf.int32), [-1])
        anchor_boxes = self._anchors.boxes
        matches = match_anchors(
            anchor_boxes, gt_boxes, gt_classes, self._match_threshold, self._unmatched_threshold
        )
        matched = matches >= 0
        # Unmatched anchors are encoded against themselves, giving exact zeros.
        safe_rows = tf.maximum(matches, 0)
        matched_boxes = tf.where(
            matched[:, tf.newaxis],
            tf.gather(tf.concat([gt_boxes, tf.zeros([1, 4])], 0), safe_rows),
            anchor_boxes,
        )
        box_targets = box_ops.encode_boxes(
            matched_boxes, anchor_boxes, weights=(1.0, 1.0, 1.0, 1.0)
        )
        return matches, box_targets, gt_classes

    def label_anchors(self, gt_boxes, gt_classes):
        """Labels all anchors of one image.

        Args:
          gt_boxes: [N, 4] groundtruth boxes in network-input pixels (N dynamic,
            possibly 0; rows of padding are ignored).
          gt_classes: [N] int classes; < 0 marks padding.

        Returns:
          cls_targets: {level: [h, w, A] int32}: the gt class for matched anchors,
            -1 negative, -2 ignored.
          box_targets: {level: [h, w, A * 4] float32}: encoded targets for matched
            anchors, 0 elsewhere.
          num_positives: float32 scalar, the number of matched anchors.
        """
        matches, box_targets, gt_classes = self._match_and_encode(gt_boxes, gt_classes)
        classes = tf.gather(tf.concat([gt_classes, [0]], 0), tf.maximum(matches, 0))
        cls_targets = tf.where(matches >= 0, classes, matches)
        num_positives = tf.reduce_sum(tf.cast(matches >= 0, tf.float32))
        return (
            self._anchors.unpack_labels(cls_targets),
            self._anchors.unpack_labels(box_targets),
            num_positives,
        )


class RpnAnchorLabeler(AnchorLabeler):
    """RPN targets: objectness with balanced fg/bg sampling, box targets."""

    def __init__(
        self,
        anchors,
        match_threshold=0.7,
        unmatched_threshold=0.3,
        rpn_batch_size_per_im=256,
        rpn_fg_fraction=0.5,
        seed=None,
    ):
        """Builds the labeler.

        Args:
          anchors: a `detection.dataloader.anchors.Anchors`.
          match_threshold: float, IoU >= this is foreground.
          unmatched_threshold: float, IoU < this is background.
          rpn_batch_size_per_im: int, anchors sampled per image.
          rpn_fg_fraction: float in (0, 1], largest foreground share of a sample.
          seed: optional int op seed for the sampling.
        """
        super().__init__(anchors, match_threshold, unmatched_threshold)
        if int(rpn_batch_size_per_im) < 1:
            raise ValueError(f"rpn_batch_size_per_im must be >= 1, got {rpn_batch_size_per_im}.")
        if not 0.0 < rpn_fg_fraction <= 1.0:
            raise ValueError(f"rpn_fg_fraction must be in (0, 1], got {rpn_fg_fraction}.")
        self._batch_size = int(rpn_batch_size_per_im)
        self._max_positives = int(rpn_fg_fraction * self._batch_size)
        self._seed = seed

    def _sample(self, candidates, num_samples_max, num_samples):
        """Uniformly picks `min(num_samples, #candidates)` candidates.

        Args:
          candidates: [M] bool.
          num_samples_max: Python int bound on `num_samples` (static top-k size).
          num_samples: int32 scalar <= num_samples_max.

        Returns:
          [M] bool of the picked anchors.
        """
        num_anchors = candidates.shape[0]
        if num_samples_max == 0:
            return tf.zeros([num_anchors], tf.bool)
        # Ranking random keys picks a uniform random subset of the candidates.
        keys = tf.random.uniform([num_anchors], seed=self._seed)
        keys = tf.where(candidates, keys, -1.0)
        top_keys, top = tf.math.top_k(keys, k=min(num_samples_max, num_anchors))
        take = (top_keys >= 0.0) & (tf.range(tf.shape(top)[0]) < num_samples)
        return tf.scatter_nd(top[:, tf.newaxis], take, [num_anchors])

    def label_anchors(self, gt_boxes, gt_classes):
        """Labels all anchors of one image.

        Args:
          gt_boxes: [N, 4] groundtruth boxes in network-input pixels.
          gt_classes: [N] int classes; only used to skip padding (< 0).

        Returns:
          score_targets: {level: [h, w, A] int32}: 1 sampled foreground, 0 sampled
            background, -1 not sampled (ignored). At most
            `rpn_fg_fraction * rpn_batch_size_per_im` foreground and
            `rpn_batch_size_per_im` anchors in all.
          box_targets: {level: [h, w, A * 4] float32}: encoded targets of every
            matched anchor (sampled or not), 0 elsewhere.
        """
        matches, box_targets, _ = self._match_and_encode(gt_boxes, gt_classes)
        positives = self._sample(matches >= 0, self._max_positives, self._max_positives)
        num_positives = tf.reduce_sum(tf.cast(positives, tf.int32))
        negatives = self._sample(
            matches == _NEGATIVE, self._batch_size, self._batch_size - num_positives
        )
        score_targets = tf.where(positives, 1, tf.where(negatives, 0, -1))
        return (
            self._anchors.unpack_labels(score_targets),
            self._anchors.unpack_labels(box_targets),
        )
