"""Mean IoU of a semantic segmentation model over a whole eval set, from confusion matrices.

The pixel counting runs in the eval step (`confusion_matrices`, static shapes, XLA-friendly), so
only a `[num_classes, num_classes]` matrix per image travels to the host instead of two label
maps; `MeanIoU` sums the matrices of the real (non-padding) images and derives:

- `iou_class_<c>`: `tp / (tp + fp + fn)` of class c, or -1 when c has no groundtruth pixel
  (the original framework's per-class metric);
- `miou`: the mean IoU over the classes that occur in the groundtruth or the predictions
  (non-zero union), as `tf.compat.v1.metrics.mean_iou` computes it;
- `pixel_accuracy`: correctly classified pixels / labelled pixels.

Pixels labelled `ignore_label` (or with a label outside `[0, num_classes)`, which is how the
padding of the last eval batch arrives) are not counted.
"""

import numpy as np
import tensorflow as tf


def confusion_matrices(label_maps, predicted_classes, num_classes, ignore_label):
    """Per-image confusion matrices of predicted against groundtruth classes.

    Args:
      label_maps: [b, H, W] integer groundtruth classes; `ignore_label` or values outside
        `[0, num_classes)` mark pixels that are not counted.
      predicted_classes: [b, H, W] integer predictions in `[0, num_classes)`.
      num_classes: C.
      ignore_label: the groundtruth value of unlabelled pixels.

    Returns:
      [b, C, C] int32; entry `[i, t, p]` counts the pixels of image i with groundtruth t and
      prediction p.
    """
    labels = tf.cast(label_maps, tf.int32)
    predictions = tf.clip_by_value(tf.cast(predicted_classes, tf.int32), 0, num_classes - 1)
    counted = (labels >= 0) & (labels < num_classes) & (labels != ignore_label)
    batch = tf.shape(labels)[0]
    cells = num_classes * num_classes
    image_offsets = tf.reshape(tf.range(batch) * cells, [-1, 1, 1])
    # Uncounted pixels go to one extra bucket, dropped below: a segment sum with static shapes
    # instead of a boolean mask.
    index = tf.where(counted, image_offsets + labels * num_classes + predictions, batch * cells)
    index = tf.reshape(index, [-1])
    counts = tf.math.unsorted_segment_sum(tf.ones_like(index), index, batch * cells + 1)
    return tf.reshape(counts[:-1], [batch, num_classes, num_classes])


def iou_metrics(confusion):
    """The metrics of the module docstring from one `[C, C]` confusion matrix (rows: truth)."""
    confusion = np.asarray(confusion, np.float64)
    true_positives = np.diag(confusion)
    groundtruth = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    union = groundtruth + predicted - true_positives
    iou = np.divide(true_positives, union, out=np.zeros_like(union), where=union > 0)
    metrics = {
        "miou": float(iou[union > 0].mean()) if np.any(union > 0) else 0.0,
        "pixel_accuracy": float(true_positives.sum() / max(confusion.sum(), 1.0)),
    }
    for c, value in enumerate(iou):
        metrics[f"iou_class_{c}"] = float(value) if groundtruth[c] > 0 else -1.0
    return metrics


class MeanIoU:
    """`update(predictions, groundtruths)` per batch, then `evaluate()`.

    predictions: `confusion_matrix [b, C, C]` (from `confusion_matrices`), optional
    `valid [b]` bool (False for padding images, which are skipped). groundtruths: unused
    (the groundtruth is already counted into the matrices).
    """

    def __init__(self, num_classes):
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes: must be an integer >= 1, got {num_classes!r}")
        self._num_classes = int(num_classes)
        self.reset()

    def reset(self):
        self._confusion = np.zeros([self._num_classes] * 2, np.int64)
        self._num_images = 0

    @property
    def confusion_matrix(self):
        """[C, C] int64 counts so far (rows: groundtruth class, columns: prediction)."""
        return self._confusion.copy()

    def update(self, predictions, groundtruths=None):
        del groundtruths
        matrices = np.asarray(predictions["confusion_matrix"], np.int64)
        expected = (self._num_classes, self._num_classes)
        if matrices.ndim != 3 or matrices.shape[1:] != expected:
            raise ValueError(
                f"confusion_matrix must be [b, {self._num_classes}, {self._num_classes}], "
                f"got {matrices.shape}"
            )
        valid = np.asarray(predictions.get("valid", np.ones(len(matrices), bool)), bool)
        self._confusion += matrices[valid].sum(axis=0)
        self._num_images += int(valid.sum())

    def evaluate(self):
        """Returns `miou`, `pixel_accuracy` and `iou_class_<c>` over every image seen.

        Raises:
          ValueError: no labelled pixel was seen.
        """
        if self._confusion.sum() == 0:
            raise ValueError(
                f"mean IoU: no labelled pixel in the {self._num_images} evaluated images"
            )
        return iou_metrics(self._confusion)
