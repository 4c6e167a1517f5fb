"""Per-pixel softmax cross-entropy of semantic segmentation (the `segmentation_loss` section).

As the original framework:

- `use_groundtruth_dimension: true` upsamples the logits (bilinear) to the label map's size;
  false brings the label map to the logits' size instead (nearest neighbour here: the original
  resized labels bilinearly only because TPUs of its time lacked a nearest-neighbour resize,
  and bilinear mixes class ids at boundaries);
- pixels labelled `ignore_label` do not count;
- the one-hot target is smoothed: `onehot * (1 - label_smoothing) + label_smoothing / C`;
- each pixel's loss is weighted by `class_weights[label]` (all 1 when the list is empty);
- the sum is divided by the number of labelled pixels (unweighted).
Labels outside `[0, C)` (the -1 of eval padding) are ignored like `ignore_label`.
"""

import tensorflow as tf


class SegmentationLoss:
    """`loss(logits [b, h, w, C] float32, label_map [b, H, W] int) -> scalar float32`."""

    def __init__(
        self,
        num_classes,
        ignore_label=255,
        class_weights=(),
        use_groundtruth_dimension=True,
        label_smoothing=0.0,
    ):
        """Args:
        num_classes: C, background (class 0) included.
        ignore_label: label map value of unlabelled pixels.
        class_weights: C per-class loss weights, or empty for all 1.
        use_groundtruth_dimension: compare at the label map's size (else at the logits').
        label_smoothing: in [0, 1).

        Raises:
          ValueError: class_weights of another length than C, or label_smoothing outside [0, 1).
        """
        class_weights = list(class_weights or [])
        if class_weights and len(class_weights) != num_classes:
            raise ValueError(
                f"segmentation_loss.class_weights: needs architecture.num_classes={num_classes} "
                f"values, got {len(class_weights)}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"segmentation_loss.label_smoothing: must be in [0, 1), got {label_smoothing!r}"
            )
        self._num_classes = int(num_classes)
        self._ignore_label = ignore_label
        self._class_weights = [float(w) for w in class_weights] or [1.0] * self._num_classes
        self._use_groundtruth_dimension = use_groundtruth_dimension
        self._label_smoothing = float(label_smoothing)

    def __call__(self, logits, label_map):
        labels = tf.cast(label_map, tf.int32)
        if self._use_groundtruth_dimension:
            logits = tf.image.resize(logits, labels.shape[1:3], method="bilinear")
        else:
            labels = tf.image.resize(labels[..., None], logits.shape[1:3], method="nearest")
            labels = labels[..., 0]
        counted = (labels >= 0) & (labels < self._num_classes) & (labels != self._ignore_label)
        labels = tf.where(counted, labels, 0)
        targets = tf.one_hot(labels, self._num_classes, dtype=tf.float32)
        if self._label_smoothing:
            smoothing = self._label_smoothing
            targets = targets * (1.0 - smoothing) + smoothing / self._num_classes
        losses = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        weights = tf.gather(tf.constant(self._class_weights, tf.float32), labels)
        weights *= tf.cast(counted, tf.float32)
        normalizer = tf.reduce_sum(tf.cast(counted, tf.float32))
        return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), normalizer)
