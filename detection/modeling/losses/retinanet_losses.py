"""RetinaNet class (focal) and box (Huber) losses, normalized as the original.

Targets come from the anchor labeler, per level (string keys):

- `cls_targets {'3': [b, h, w, A]} int32`: class id of the matched box, -1
  for a negative (background) anchor, -2 for an ignored anchor;
- `box_targets {'3': [b, h, w, A * 4]} float`: encoded box targets, all
  zeros for unmatched anchors;
- `num_positives [b] float32`: matched anchors per image.

Both losses are sums over anchors divided by a normalizer
`N = sum_batch(num_positives) + 1` (the +1 keeps an image without objects
finite); the box loss is further divided by 4 (coordinates per anchor).
"""

import keras
import tensorflow as tf

from detection.modeling.losses import focal_loss

IGNORE_LABEL = -2


def positives_normalizer(num_positives):
    """`sum(num_positives) + 1.0` as a float32 scalar; `num_positives [b]`."""
    return tf.reduce_sum(tf.cast(num_positives, tf.float32)) + 1.0


def _check_levels(outputs, targets, what):
    if sorted(outputs) != sorted(targets):
        raise ValueError(
            f"{what}: output levels {sorted(outputs)} != target levels {sorted(targets)}"
        )


class RetinaNetClassLoss:
    """Sum of sigmoid focal losses over non-ignored anchors, over N."""

    def __init__(self, num_classes, focal_loss_alpha=0.25, focal_loss_gamma=1.5):
        """Initializes the loss.

        Args:
          num_classes: classes per anchor (background 0 included).
          focal_loss_alpha: weight of positive entries.
          focal_loss_gamma: focusing exponent.
        """
        if num_classes < 1:
            raise ValueError(f"num_classes: must be >= 1, got {num_classes}")
        if not 0.0 <= focal_loss_alpha <= 1.0:
            raise ValueError(f"focal_loss_alpha: must be in [0, 1], got {focal_loss_alpha}")
        if focal_loss_gamma < 0.0:
            raise ValueError(f"focal_loss_gamma: must be >= 0, got {focal_loss_gamma}")
        self._num_classes = num_classes
        self._alpha = focal_loss_alpha
        self._gamma = focal_loss_gamma

    def __call__(self, cls_outputs, cls_targets, num_positives, normalizer=None):
        """Computes the class loss.

        Args:
          cls_outputs: `{'3': [b, h, w, A * num_classes]}` logits.
          cls_targets: `{'3': [b, h, w, A]}` int class ids, -1 negative,
            -2 ignored.
          num_positives: `[b]` matched anchors per image.
          normalizer: optional float scalar replacing
            `sum(num_positives) + 1` (e.g. a moving average of it).

        Returns:
          float32 scalar.
        """
        _check_levels(cls_outputs, cls_targets, "retinanet class loss")
        if normalizer is None:
            normalizer = positives_normalizer(num_positives)
        total = 0.0
        for level in sorted(cls_outputs, key=int):
            total += self._level_loss(cls_outputs[level], cls_targets[level], level)
        return total / normalizer

    def _level_loss(self, logits, targets, level):
        targets = tf.cast(targets, tf.int32)
        num_anchors = targets.shape[-1]
        if logits.shape[-1] != num_anchors * self._num_classes:
            raise ValueError(
                f"retinanet class loss, level {level}: outputs have "
                f"{logits.shape[-1]} channels, expected anchors "
                f"({num_anchors}) * num_classes ({self._num_classes})"
            )
        # one_hot maps the negative labels -1 and -2 to all-zero rows.
        one_hot = tf.one_hot(targets, self._num_classes, dtype=tf.float32)
        # [b, h, w, A, K] -> [b, h, w, A * K]: anchor-major like the outputs.
        one_hot = tf.reshape(one_hot, tf.shape(logits))
        loss = focal_loss.sigmoid_focal_loss(logits, one_hot, self._alpha, self._gamma)
        valid = tf.cast(tf.not_equal(targets, IGNORE_LABEL), tf.float32)
        valid = tf.repeat(valid, self._num_classes, axis=-1)
        return tf.reduce_sum(loss * valid)


class RetinaNetBoxLoss:
    """Sum of Huber losses over non-zero box targets, over 4 * N."""

    def __init__(self, huber_loss_delta=0.1):
        """Initializes the loss.

        Args:
          huber_loss_delta: where the Huber loss turns from quadratic to
            linear; about the typical size of an encoded target (~0.1).
        """
        if huber_loss_delta <= 0.0:
            raise ValueError(f"huber_loss_delta: must be > 0, got {huber_loss_delta}")
        self._delta = huber_loss_delta

    def __call__(self, box_outputs, box_targets, num_positives, normalizer=None):
        """Computes the box loss.

        Args:
          box_outputs: `{'3': [b, h, w, A * 4]}` predicted encodings.
          box_targets: `{'3': [b, h, w, A * 4]}` target encodings; exact
            zeros are not trained (unmatched anchors).
          num_positives: `[b]` matched anchors per image.
          normalizer: optional float scalar replacing
            `sum(num_positives) + 1`.

        Returns:
          float32 scalar.
        """
        _check_levels(box_outputs, box_targets, "retinanet box loss")
        if normalizer is None:
            normalizer = positives_normalizer(num_positives)
        total = 0.0
        for level in sorted(box_outputs, key=int):
            outputs = tf.cast(box_outputs[level], tf.float32)
            targets = tf.cast(box_targets[level], tf.float32)
            if outputs.shape[-1] != targets.shape[-1]:
                raise ValueError(
                    f"retinanet box loss, level {level}: outputs have "
                    f"{outputs.shape[-1]} channels, targets "
                    f"{targets.shape[-1]}"
                )
            total += tf.reduce_sum(
                huber_loss(targets, outputs, self._delta)
                * tf.cast(tf.not_equal(targets, 0.0), tf.float32)
            )
        return total / (normalizer * 4.0)


def huber_loss(targets, predictions, delta):
    """Element-wise Huber loss: `0.5 e^2` for `|e| <= delta`, else
    `delta * (|e| - 0.5 delta)`."""
    error = tf.abs(predictions - targets)
    quadratic = tf.minimum(error, delta)
    return 0.5 * quadratic * quadratic + delta * (error - quadratic)


class MovingAverageNormalizer(keras.layers.Layer):
    """Exponential moving average of the loss normalizer, kept in a variable.

    With few objects per batch, `sum(num_positives) + 1` jumps from step to
    step (one crowded image can multiply it by ten), and the loss, hence the
    gradient scale, jumps with it. Averaging the normalizer over recent steps
    makes the effective learning rate steadier; it matters most with small
    per-replica batches.

    In training: `ema <- momentum * ema + (1 - momentum) * current` (the first
    update seeds `ema` with `current`, since any real normalizer is >= 1 and
    the variable starts at 0) and the updated value is returned. Outside
    training the variable is left alone and `current` is returned, so
    evaluation losses keep the original definition.

    The variable is non-trainable; it must be saved with the model's
    checkpoint so a resumed run keeps its average.
    """

    def __init__(self, momentum, **kwargs):
        kwargs.setdefault("name", "moving_normalizer")
        super().__init__(**kwargs)
        if not 0.0 < momentum < 1.0:
            raise ValueError(
                f"normalizer_momentum: must be in (0, 1) for a moving average, got {momentum}"
            )
        self._momentum = momentum
        self.moving_normalizer = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            aggregation="mean",
            name="moving_normalizer",
        )

    def call(self, current, training=None):
        current = tf.cast(current, tf.float32)
        if not training:
            return current
        ema = self.moving_normalizer.value
        updated = tf.where(
            ema > 0.0, self._momentum * ema + (1.0 - self._momentum) * current, current
        )
        self.moving_normalizer.assign(updated)
        return updated


class RetinaNetLoss:
    """`total = cls_loss + box_loss_weight * box_loss`, one shared normalizer.

    Mirrors the `retinanet_loss` params section.
    """

    def __init__(
        self,
        num_classes,
        focal_loss_alpha=0.25,
        focal_loss_gamma=1.5,
        huber_loss_delta=0.1,
        box_loss_weight=50.0,
        normalizer_momentum=0.0,
    ):
        """Initializes the losses.

        Args:
          num_classes: classes per anchor (background included).
          focal_loss_alpha: see `RetinaNetClassLoss`.
          focal_loss_gamma: see `RetinaNetClassLoss`.
          huber_loss_delta: see `RetinaNetBoxLoss`.
          box_loss_weight: weight of the box loss in the total.
          normalizer_momentum: 0 for the per-batch normalizer
            `sum(num_positives) + 1`; in (0, 1) for its moving average (see
            `MovingAverageNormalizer`).
        """
        if box_loss_weight < 0.0:
            raise ValueError(f"box_loss_weight: must be >= 0, got {box_loss_weight}")
        if not 0.0 <= normalizer_momentum < 1.0:
            raise ValueError(f"normalizer_momentum: must be in [0, 1), got {normalizer_momentum}")
        self.class_loss = RetinaNetClassLoss(num_classes, focal_loss_alpha, focal_loss_gamma)
        self.box_loss = RetinaNetBoxLoss(huber_loss_delta)
        self._box_loss_weight = box_loss_weight
        self.normalizer = (
            MovingAverageNormalizer(normalizer_momentum) if normalizer_momentum > 0.0 else None
        )

    def __call__(self, outputs, labels, training=False):
        """Computes the losses.

        Args:
          outputs: `{'class_outputs': {...}, 'box_outputs': {...}}` from the
            network.
          labels: `{'cls_targets': {...}, 'box_targets': {...},
            'num_positives': [b]}` (other keys are ignored).
          training: update the moving normalizer (when there is one).

        Returns:
          `{'total_loss', 'cls_loss', 'box_loss', 'normalizer'}` float32
          scalars.
        """
        for key in ("cls_targets", "box_targets", "num_positives"):
            if key not in labels:
                raise KeyError(f"retinanet loss: labels has no {key!r}; got {sorted(labels)}")
        normalizer = positives_normalizer(labels["num_positives"])
        if self.normalizer is not None:
            normalizer = self.normalizer(normalizer, training=training)
        cls_loss = self.class_loss(
            outputs["class_outputs"], labels["cls_targets"], labels["num_positives"], normalizer
        )
        box_loss = self.box_loss(
            outputs["box_outputs"], labels["box_targets"], labels["num_positives"], normalizer
        )
        return {
            "total_loss": cls_loss + self._box_loss_weight * box_loss,
            "cls_loss": cls_loss,
            "box_loss": box_loss,
            "normalizer": normalizer,
        }
