"""Sigmoid focal loss.

Lin et al. "Focal Loss for Dense Object Detection", ICCV 2017:
`FL(p_t) = -alpha_t * (1 - p_t)^gamma * log(p_t)` where `p_t` is the predicted
probability of the true label. The factor `(1 - p_t)^gamma` shrinks the loss of
the (very many) well-classified anchors, so the rare hard ones dominate.
"""

import tensorflow as tf


def sigmoid_focal_loss(logits, targets, alpha, gamma):
    """Element-wise, unnormalized sigmoid focal loss.

    The modulating factor is computed in log space,
    `(1 - p_t)^gamma = exp(-gamma * (z * softplus(x) + (1 - z) *
    softplus(-x)))`, which stays finite for any logit and keeps a finite
    gradient for `gamma < 1` (a direct `pow` does not at `p_t = 1`).

    Args:
      logits: float tensor, any shape.
      targets: float tensor of the same shape, 1.0 for positives and 0.0 for
        negatives (soft targets in between are allowed; `alpha` is given to
        entries equal to 1.0 only).
      alpha: weight of the positives; negatives get `1 - alpha`.
      gamma: focusing exponent (>= 0); 0 gives alpha-weighted cross entropy.

    Returns:
      float32 tensor of the shape of `logits`.

    Raises:
      ValueError: if the shapes differ or alpha/gamma are out of range.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"focal_loss_alpha: must be in [0, 1], got {alpha}")
    if gamma < 0.0:
        raise ValueError(f"focal_loss_gamma: must be >= 0, got {gamma}")
    logits = tf.cast(logits, tf.float32)
    targets = tf.cast(targets, tf.float32)
    if logits.shape.is_fully_defined() and targets.shape.is_fully_defined():
        if logits.shape != targets.shape:
            raise ValueError(
                f"focal loss: logits shape {logits.shape} != targets shape {targets.shape}"
            )
    # One softplus serves both terms: softplus(-x) = softplus(x) - x. Then
    # cross entropy = z * softplus(-x) + (1 - z) * softplus(x) and
    # log(1 - p_t) = -(z * softplus(x) + (1 - z) * softplus(-x)): fewer passes over the
    # [batch, anchors * classes] tensors, forward and backward, than separate ops.
    softplus_pos = tf.nn.softplus(logits)
    softplus_neg = softplus_pos - logits
    cross_entropy = targets * softplus_neg + (1.0 - targets) * softplus_pos
    log_one_minus_pt = cross_entropy - softplus_pos - softplus_neg
    modulator = tf.exp(gamma * log_one_minus_pt)
    # The alpha weights depend on the targets alone: one multiply, no select in the gradient.
    weights = tf.where(tf.equal(targets, 1.0), alpha, 1.0 - alpha)
    return modulator * cross_entropy * weights
