"""ShapeMask mask-branch losses: shape prior (squared error), coarse and fine masks (sigmoid
cross entropy), weighted by the `shapemask_loss` section.

Each loss sums over the pixels of the valid sampled instances (`mask_is_valid`: the image has
instances and the class trains masks) and divides by the number of foreground target pixels
of those instances, plus 0.001 (an image batch without a valid mask gives 0, not NaN):

- shape prior loss: `sum(0.5 * (target - prior)^2) / (sum(targets) + 0.001)`;
- coarse / fine mask loss: `sum(BCE(target, logit)) / (sum(targets) + 0.001)`, with targets
  at S x S (coarse) or S * u x S * u (fine).

The original framework meant these formulas; its code multiplied a batch-summed Keras cross
entropy (already averaged over the last axis) by the validity mask, which scaled the mask
losses by the number of valid instances / the mask width and let invalid instances' targets
into the normalizer. Here the definition is applied as written.
"""

import tensorflow as tf

_EPSILON = 0.001


def _valid_weights(valid, rank):
    valid = tf.cast(valid, tf.float32)
    return tf.reshape(valid, tf.concat([tf.shape(valid), [1] * (rank - 2)], 0))


def _check(values, targets, valid, what):
    if values.shape.rank != 4 or targets.shape.rank != 4:
        raise ValueError(
            f"{what}: predictions and targets must be [batch, n, h, w], got {values.shape} and "
            f"{targets.shape}"
        )
    if values.shape[1:].is_fully_defined() and targets.shape[1:].is_fully_defined():
        if values.shape[1:] != targets.shape[1:]:
            raise ValueError(
                f"{what}: predictions {values.shape} and targets {targets.shape} differ"
            )
    if valid.shape.rank != 2:
        raise ValueError(f"{what}: mask_is_valid must be [batch, n], got {valid.shape}")


def shape_prior_loss(prior_masks, targets, valid):
    """Squared error of the prior masks, over the valid instances' foreground pixels.

    Args:
      prior_masks: [b, n, S, S] prior masks in [0, 1].
      targets: [b, n, S, S] binary mask targets.
      valid: [b, n] 1 for instances that train masks.

    Returns:
      float32 scalar.
    """
    prior_masks, targets, valid = (tf.convert_to_tensor(t) for t in (prior_masks, targets, valid))
    _check(prior_masks, targets, valid, "shape prior loss")
    weights = _valid_weights(valid, 4)
    targets = tf.cast(targets, tf.float32) * weights
    diff = (targets - tf.cast(prior_masks, tf.float32)) * weights
    return 0.5 * tf.reduce_sum(diff * diff) / (tf.reduce_sum(targets) + _EPSILON)


def mask_loss(logits, targets, valid):
    """Sigmoid cross entropy of mask logits, over the valid instances' foreground pixels.

    Args:
      logits: [b, n, h, w] mask logits.
      targets: [b, n, h, w] binary mask targets.
      valid: [b, n] 1 for instances that train masks.

    Returns:
      float32 scalar.
    """
    logits, targets, valid = (tf.convert_to_tensor(t) for t in (logits, targets, valid))
    _check(logits, targets, valid, "mask loss")
    weights = _valid_weights(valid, 4)
    targets = tf.cast(targets, tf.float32)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=targets, logits=tf.cast(logits, tf.float32)
    )
    return tf.reduce_sum(cross_entropy * weights) / (tf.reduce_sum(targets * weights) + _EPSILON)


class ShapeMaskLoss:
    """The three mask-branch losses and their weighted sum (the `shapemask_loss` section)."""

    def __init__(
        self, shape_prior_loss_weight=0.1, coarse_mask_loss_weight=1.0, fine_mask_loss_weight=1.0
    ):
        """Initializes the loss.

        Args:
          shape_prior_loss_weight, coarse_mask_loss_weight, fine_mask_loss_weight: >= 0.

        Raises:
          ValueError: a negative weight, naming it.
        """
        for name, value in (
            ("shape_prior_loss_weight", shape_prior_loss_weight),
            ("coarse_mask_loss_weight", coarse_mask_loss_weight),
            ("fine_mask_loss_weight", fine_mask_loss_weight),
        ):
            if value < 0.0:
                raise ValueError(f"shapemask_loss.{name} must be >= 0, got {value}")
        self._weights = (
            float(shape_prior_loss_weight),
            float(coarse_mask_loss_weight),
            float(fine_mask_loss_weight),
        )

    def __call__(self, outputs, labels):
        """Computes the losses.

        Args:
          outputs: the network's `mask_outputs` (`prior_masks`, `coarse_mask_logits`,
            `fine_mask_logits`).
          labels: the parser's `mask_targets`, `fine_mask_targets`, `mask_is_valid`.

        Returns:
          `{'total_loss', 'shape_prior_loss', 'coarse_mask_loss', 'fine_mask_loss'}` float32
          scalars; `total_loss` is the weighted sum.
        """
        valid = labels["mask_is_valid"]
        losses = {
            "shape_prior_loss": shape_prior_loss(
                outputs["prior_masks"], labels["mask_targets"], valid
            ),
            "coarse_mask_loss": mask_loss(
                outputs["coarse_mask_logits"], labels["mask_targets"], valid
            ),
            "fine_mask_loss": mask_loss(
                outputs["fine_mask_logits"], labels["fine_mask_targets"], valid
            ),
        }
        prior_weight, coarse_weight, fine_weight = self._weights
        losses["total_loss"] = (
            prior_weight * losses["shape_prior_loss"]
            + coarse_weight * losses["coarse_mask_loss"]
            + fine_weight * losses["fine_mask_loss"]
        )
        return losses
