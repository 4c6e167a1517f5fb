"""Faster / Mask R-CNN losses (RPN, Fast R-CNN, mask), normalized as the original framework.

- RPN score: sigmoid cross entropy summed over the sampled anchors (targets 1 / 0; -1 is
  ignored), per level divided by `batch * rpn_batch_size_per_im`, summed over levels.
- RPN box: Huber (`rpn_box_loss.huber_loss_delta`) summed over the non-zero box targets, per
  level divided by (their count + 0.01), summed over levels. The count is of coordinates, so
  a level's loss is the mean over the coordinates of its foreground anchors.
- Fast R-CNN class: softmax cross entropy, mean over the sampled ROIs.
- Fast R-CNN box: Huber (`frcnn_box_loss.huber_loss_delta`) between the box of the ROI's
  groundtruth class (or the one box, class-agnostic) and its target, summed over foreground
  ROIs and divided by (4 * their count + 0.01).
- Mask: sigmoid cross entropy of the groundtruth class's mask logits against the mask target,
  summed over the pixels of foreground ROIs, divided by (their pixel count + 0.01).

Every normalizer counts the local (per-replica) batch, as the original's did per TPU core.
The `valid` weights exclude sample slots that hold no real ROI (an image with fewer
candidates than samples); with every slot real they change nothing.
"""

import tensorflow as tf

from detection.modeling.losses.retinanet_losses import huber_loss


def _sorted_levels(outputs, targets, what):
    if sorted(outputs) != sorted(targets):
        raise ValueError(
            f"{what}: output levels {sorted(outputs)} != target levels {sorted(targets)}"
        )
    return sorted(outputs, key=int)


def _weights(valid, like):
    if valid is None:
        return tf.ones(tf.shape(like)[:2], tf.float32)
    return tf.cast(valid, tf.float32)


def rpn_score_loss(score_outputs, score_targets, rpn_batch_size_per_im):
    """RPN objectness loss.

    Args:
      score_outputs: {level: [b, h, w, A]} logits.
      score_targets: {level: [b, h, w, A]} int, 1 foreground, 0 background, -1 ignored.
      rpn_batch_size_per_im: anchors sampled per image (the parser's), the normalizer.

    Returns:
      float32 scalar.
    """
    total = 0.0
    for level in _sorted_levels(score_outputs, score_targets, "rpn score loss"):
        logits = tf.cast(score_outputs[level], tf.float32)
        targets = tf.cast(score_targets[level], tf.int32)
        sampled = tf.cast(targets >= 0, tf.float32)
        cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.cast(tf.maximum(targets, 0), tf.float32), logits=logits
        )
        normalizer = tf.cast(tf.shape(logits)[0] * rpn_batch_size_per_im, tf.float32)
        total += tf.reduce_sum(cross_entropy * sampled) / normalizer
    return total


def rpn_box_loss(box_outputs, box_targets, huber_loss_delta):
    """RPN box regression loss over the foreground anchors (non-zero targets).

    Args:
      box_outputs: {level: [b, h, w, A * 4]} predicted deltas.
      box_targets: {level: [b, h, w, A * 4]} encoded targets, zero for non-foreground anchors.
      huber_loss_delta: where the Huber loss turns linear.

    Returns:
      float32 scalar.
    """
    total = 0.0
    for level in _sorted_levels(box_outputs, box_targets, "rpn box loss"):
        outputs = tf.cast(box_outputs[level], tf.float32)
        targets = tf.cast(box_targets[level], tf.float32)
        mask = tf.cast(tf.not_equal(targets, 0.0), tf.float32)
        loss = tf.reduce_sum(huber_loss(targets, outputs, huber_loss_delta) * mask)
        total += loss / (tf.reduce_sum(mask) + 0.01)
    return total


def fast_rcnn_class_loss(class_outputs, class_targets, valid=None):
    """Softmax cross entropy, mean over the (valid) sampled ROIs.

    Args:
      class_outputs: [b, n, num_classes] logits.
      class_targets: [b, n] int, 0 for background.
      valid: optional [b, n] bool, False for empty sample slots.

    Returns:
      float32 scalar.
    """
    logits = tf.cast(class_outputs, tf.float32)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(class_targets, tf.int32), logits=logits
    )
    weights = _weights(valid, logits)
    return tf.reduce_sum(cross_entropy * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def select_class_boxes(box_outputs, classes):
    """The box of each ROI's class: [b, n, num_classes * 4], [b, n] -> [b, n, 4].

    A one-hot contraction rather than a gather (static shapes; a matmul on TPU).
    """
    box_outputs = tf.cast(box_outputs, tf.float32)
    num_classes = box_outputs.shape[-1] // 4
    per_class = tf.reshape(box_outputs, [-1, box_outputs.shape[1], num_classes, 4])
    one_hot = tf.one_hot(tf.cast(classes, tf.int32), num_classes, dtype=tf.float32)
    return tf.einsum("bnkj,bnk->bnj", per_class, one_hot)


def fast_rcnn_box_loss(
    box_outputs, class_targets, box_targets, huber_loss_delta, class_agnostic=False, valid=None
):
    """Huber loss of the foreground ROIs' boxes.

    Args:
      box_outputs: [b, n, num_classes * 4] deltas, or [b, n, 4] when `class_agnostic`.
      class_targets: [b, n] int, 0 for background.
      box_targets: [b, n, 4] encoded targets (the stage's box weights).
      huber_loss_delta: where the Huber loss turns linear.
      class_agnostic: the head predicts one box per ROI.
      valid: optional [b, n] bool, False for empty sample slots.

    Returns:
      float32 scalar.
    """
    outputs = tf.cast(box_outputs, tf.float32)
    if not class_agnostic:
        outputs = select_class_boxes(outputs, class_targets)
    foreground = tf.cast(class_targets > 0, tf.float32) * _weights(valid, outputs)
    mask = tf.tile(foreground[..., tf.newaxis], [1, 1, 4])
    loss = huber_loss(tf.cast(box_targets, tf.float32), outputs, huber_loss_delta)
    return tf.reduce_sum(loss * mask) / (tf.reduce_sum(mask) + 0.01)


def mask_loss(mask_outputs, mask_targets, class_targets, valid=None):
    """Sigmoid cross entropy over the pixels of foreground ROIs.

    Args:
      mask_outputs: [b, K, m, m] logits of each ROI's groundtruth class.
      mask_targets: [b, K, m, m] targets in [0, 1].
      class_targets: [b, K] int, 0 for background (not trained).
      valid: optional [b, K] bool, False for empty sample slots.

    Returns:
      float32 scalar.
    """
    logits = tf.cast(mask_outputs, tf.float32)
    foreground = tf.cast(class_targets > 0, tf.float32) * _weights(valid, logits)
    weights = tf.broadcast_to(foreground[:, :, tf.newaxis, tf.newaxis], tf.shape(logits))
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(mask_targets, tf.float32), logits=logits
    )
    return tf.reduce_sum(cross_entropy * weights) / (tf.reduce_sum(weights) + 0.01)


class MaskRCNNLoss:
    """The total loss of (Cascade) Faster / Mask R-CNN from the network's training outputs.

    `total = rpn_score + rpn_box + frcnn_class + frcnn_box (+ mask)`, where with a cascade the
    Fast R-CNN losses are the mean over the stages (as the original).
    """

    def __init__(
        self,
        rpn_batch_size_per_im=256,
        rpn_huber_loss_delta=1.0 / 9.0,
        frcnn_huber_loss_delta=1.0,
        class_agnostic_bbox_pred=False,
        include_mask=True,
    ):
        """Initializes the loss.

        Args:
          rpn_batch_size_per_im: `rpn_score_loss.rpn_batch_size_per_im`.
          rpn_huber_loss_delta: `rpn_box_loss.huber_loss_delta`.
          frcnn_huber_loss_delta: `frcnn_box_loss.huber_loss_delta`.
          class_agnostic_bbox_pred: `frcnn_head.class_agnostic_bbox_pred`.
          include_mask: add the mask loss.

        Raises:
          ValueError: a non-positive size or delta.
        """
        if rpn_batch_size_per_im < 1:
            raise ValueError(
                f"rpn_score_loss.rpn_batch_size_per_im must be >= 1, got {rpn_batch_size_per_im}"
            )
        for key, delta in (
            ("rpn_box_loss.huber_loss_delta", rpn_huber_loss_delta),
            ("frcnn_box_loss.huber_loss_delta", frcnn_huber_loss_delta),
        ):
            if delta <= 0:
                raise ValueError(f"{key} must be > 0, got {delta}")
        self._rpn_batch_size_per_im = rpn_batch_size_per_im
        self._rpn_delta = rpn_huber_loss_delta
        self._frcnn_delta = frcnn_huber_loss_delta
        self._class_agnostic = class_agnostic_bbox_pred
        self._include_mask = include_mask

    def __call__(self, outputs, labels):
        """Computes the losses.

        Args:
          outputs: the network's training outputs: `rpn_score_outputs`, `rpn_box_outputs`
            (per level), `stages` (a list of dicts with `class_outputs`, `box_outputs`,
            `class_targets`, `box_targets`, `valid`) and with masks `mask_outputs`,
            `mask_targets`, `mask_class_targets`, `mask_valid`.
          labels: `rpn_score_targets`, `rpn_box_targets` (per level).

        Returns:
          {'total_loss', 'rpn_score_loss', 'rpn_box_loss', 'fast_rcnn_class_loss',
           'fast_rcnn_box_loss', 'mask_loss' (with masks)} float32 scalars.
        """
        losses = {
            "rpn_score_loss": rpn_score_loss(
                outputs["rpn_score_outputs"],
                labels["rpn_score_targets"],
                self._rpn_batch_size_per_im,
            ),
            "rpn_box_loss": rpn_box_loss(
                outputs["rpn_box_outputs"], labels["rpn_box_targets"], self._rpn_delta
            ),
        }
        stages = outputs["stages"]
        class_losses = [
            fast_rcnn_class_loss(s["class_outputs"], s["class_targets"], s["valid"]) for s in stages
        ]
        box_losses = [
            fast_rcnn_box_loss(
                s["box_outputs"],
                s["class_targets"],
                s["box_targets"],
                self._frcnn_delta,
                self._class_agnostic,
                s["valid"],
            )
            for s in stages
        ]
        losses["fast_rcnn_class_loss"] = tf.add_n(class_losses) / len(stages)
        losses["fast_rcnn_box_loss"] = tf.add_n(box_losses) / len(stages)
        if self._include_mask:
            losses["mask_loss"] = mask_loss(
                outputs["mask_outputs"],
                outputs["mask_targets"],
                outputs["mask_class_targets"],
                outputs["mask_valid"],
            )
        losses["total_loss"] = tf.add_n(list(losses.values()))
        return losses
