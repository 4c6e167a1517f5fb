"""Top-k accuracy of an image classifier over a whole eval set, streamed batch by batch.

An example counts as correct at k when its label is among the k classes with the highest
logits. Ties are resolved in the label's favour, as `tf.nn.in_top_k` does: the label is in the
top k when fewer than k classes have a strictly higher logit. Padding examples of the last
eval batch (`predictions['valid']` False) are skipped.
"""

import numpy as np


class ClassificationAccuracy:
    """`update(predictions, groundtruths)` per batch, then `evaluate()`.

    predictions: `logits [b, num_classes]` float, optional `valid [b]` bool.
    groundtruths: `classes [b]` int, in `[0, num_classes)`.
    `evaluate()` returns `{'top_1_accuracy': ..., 'top_5_accuracy': ...}` (one key per k).
    """

    def __init__(self, top_k=(1, 5)):
        """Args:
        top_k: the k values to report, each >= 1.
        """
        if not top_k or any(int(k) != k or k < 1 for k in top_k):
            raise ValueError(f"top_k: every k must be an integer >= 1, got {top_k!r}")
        self._top_k = tuple(int(k) for k in top_k)
        self.reset()

    def reset(self):
        self._correct = dict.fromkeys(self._top_k, 0)
        self._count = 0

    def update(self, predictions, groundtruths):
        """Adds one batch.

        Raises:
          ValueError: missing keys, mismatched shapes or a label outside the logits' classes.
        """
        if groundtruths is None or "classes" not in groundtruths:
            raise ValueError("classification accuracy needs groundtruths['classes']")
        logits = np.asarray(predictions["logits"], np.float64)
        labels = np.asarray(groundtruths["classes"]).astype(np.int64)
        if logits.ndim != 2 or labels.shape != logits.shape[:1]:
            raise ValueError(
                f"logits must be [b, num_classes] and classes [b]; got {logits.shape} and "
                f"{labels.shape}"
            )
        valid = np.asarray(predictions.get("valid", np.ones(len(labels), bool)), bool)
        logits, labels = logits[valid], labels[valid]
        num_classes = logits.shape[1]
        outside = (labels < 0) | (labels >= num_classes)
        if np.any(outside):
            raise ValueError(f"groundtruth class outside [0, {num_classes}): {labels[outside][:5]}")
        label_logits = logits[np.arange(len(labels)), labels]
        # Rank of the label = number of classes scoring strictly higher.
        rank = np.sum(logits > label_logits[:, None], axis=1)
        for k in self._top_k:
            self._correct[k] += int(np.sum(rank < k))
        self._count += len(labels)

    def evaluate(self):
        """Returns `{'top_<k>_accuracy': fraction}` over every example seen since `reset()`.

        Raises:
          ValueError: no example was seen.
        """
        if self._count == 0:
            raise ValueError("classification accuracy: no valid example was evaluated")
        return {f"top_{k}_accuracy": self._correct[k] / self._count for k in self._top_k}
