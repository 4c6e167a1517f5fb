"""Anchor training targets of one image: RetinaNet classes and boxes, RPN objectness and boxes.

Anchors are matched to the groundtruth with `detection.ops.matcher` (the original framework's
ArgMaxMatcher with `force_match_for_each_row`); RPN anchors are then sampled with
`detection.ops.sampling`. Everything runs in tf.data with a dynamic number of boxes N
(including 0) and gives static output shapes.
"""

import tensorflow as tf

from detection.ops import boxes as box_ops
from detection.ops import matcher, sampling


class AnchorLabeler:
    """RetinaNet targets: per-anchor classes and box regression targets."""

    def __init__(self, anchors, match_threshold=0.5, unmatched_threshold=0.5):
        """Builds the labeler.

        Args:
          anchors: a `detection.ops.anchors.Anchors`.
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
        """Returns (matches [M], box_targets [M, 4], positives [P, 1], matched rows [P]).

        Only the P matched anchors (tens to hundreds of ~27k at 384 px) are encoded and
        scattered into zeros: encoding every anchor and masking it costs more than the
        matching (one of the largest costs of the input pipeline, bench/input_pipeline.py).
        """
        gt_boxes = tf.convert_to_tensor(gt_boxes)
        box_ops.check_boxes_shape(gt_boxes, "gt_boxes")
        gt_boxes = tf.cast(tf.reshape(gt_boxes, [-1, 4]), tf.float32)
        gt_classes = tf.reshape(tf.cast(gt_classes, tf.int32), [-1])
        anchor_boxes = self._anchors.boxes
        matches = matcher.match_boxes(
            anchor_boxes,
            gt_boxes,
            gt_classes,
            self._match_threshold,
            self._unmatched_threshold,
            force_match=True,
        )
        positives = tf.where(matches >= 0)  # [P, 1]
        rows = tf.gather_nd(matches, positives)  # [P]
        encoded = box_ops.encode_boxes(
            tf.gather(gt_boxes, rows),
            tf.gather_nd(anchor_boxes, positives),
            weights=(1.0, 1.0, 1.0, 1.0),
        )
        box_targets = tf.scatter_nd(positives, encoded, [self._anchors.num_anchors, 4])
        return matches, box_targets, positives, rows

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
        matches, box_targets, positives, rows = self._match_and_encode(gt_boxes, gt_classes)
        classes = tf.gather(tf.reshape(tf.cast(gt_classes, tf.int32), [-1]), rows)
        cls_targets = tf.tensor_scatter_nd_update(matches, positives, classes)
        num_positives = tf.cast(tf.shape(rows)[0], tf.float32)
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
          anchors: a `detection.ops.anchors.Anchors`.
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
        self._fg_fraction = float(rpn_fg_fraction)
        self._seed = seed

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
        matches, box_targets, _, _ = self._match_and_encode(gt_boxes, gt_classes)
        positives, negatives = sampling.sample_balanced(
            matches >= 0,
            matches == matcher.NEGATIVE,
            self._batch_size,
            self._fg_fraction,
            seed=self._seed,
        )
        score_targets = tf.where(positives, 1, tf.where(negatives, 0, -1))
        return (
            self._anchors.unpack_labels(score_targets),
            self._anchors.unpack_labels(box_targets),
        )
