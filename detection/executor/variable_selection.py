"""Which variables are trained, which are L2-regularized, by regexes on TF1-style names.

The original framework matched `train.frozen_variable_prefix` and
`train.regularization_variable_regex` (default `.*(kernel|weight):0$`) against TF1 variable
names such as `resnet50/conv2d/kernel:0`. Keras 3 variables have a `.path`
(`resnet50/conv2d/kernel`) and a short `.name` (`kernel`), so both regexes are matched against
the TF1-style name `f"{variable.path}:0"`, which keeps the original configs working. Matching
uses `re.match` (anchored at the start), as the original did.

The L2 penalty is the original's: `l2_weight_decay * sum(tf.nn.l2_loss(v))`, i.e. half the sum
of squared weights, so that `l2_weight_decay` values of the original configs mean the same.
"""

import re

import tensorflow as tf


def tf1_name(variable):
    """`'<path>:0'` for a Keras variable (`variable.name` for a plain tf.Variable)."""
    path = getattr(variable, "path", None)
    return f"{path}:0" if path else variable.name


def _compile(regex, key):
    try:
        return re.compile(regex)
    except re.error as error:
        raise ValueError(f"{key}={regex!r} is not a valid regular expression: {error}") from error


def split_frozen(variables, frozen_variable_prefix):
    """Splits trainable variables into (trained, frozen).

    Args:
      variables: the model's trainable variables.
      frozen_variable_prefix: regex or None/''; variables whose TF1-style name matches (from
        the start) are frozen.

    Returns:
      (trained, frozen): two lists preserving order.
    """
    if not frozen_variable_prefix:
        return list(variables), []
    pattern = _compile(frozen_variable_prefix, "train.frozen_variable_prefix")
    trained, frozen = [], []
    for variable in variables:
        (frozen if pattern.match(tf1_name(variable)) else trained).append(variable)
    return trained, frozen


def regularized(variables, regularization_variable_regex):
    """Variables whose TF1-style name matches the regex (all of them when it is None/'')."""
    if not regularization_variable_regex:
        return list(variables)
    pattern = _compile(regularization_variable_regex, "train.regularization_variable_regex")
    return [v for v in variables if pattern.match(tf1_name(v))]


def l2_loss(variables, l2_weight_decay):
    """`l2_weight_decay * sum_v sum(v**2) / 2` as a float32 scalar (0 when nothing applies)."""
    if not variables or not l2_weight_decay:
        return tf.constant(0.0, tf.float32)
    return l2_weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables])


def add_l2_gradients(grads, variables, regularized_variables, scale):
    """Adds the gradient of `scale * sum(tf.nn.l2_loss(v))`, i.e. `scale * v`, to `grads`.

    The executor differentiates the model loss alone and adds the penalty's gradient here: the
    same numbers as differentiating `loss + l2_loss`, without the backward pass accumulating two
    gradient contributions per weight (a gradient sum per variable on CPU).

    Args:
      grads: gradients of `variables` (None where the loss does not reach a variable).
      variables: the trained variables, in the order of `grads`.
      regularized_variables: the subset in the penalty.
      scale: the penalty's weight (`l2_weight_decay`, divided by the replica count when the
        gradients are of the per-replica share of the loss).

    Returns:
      A list of gradients; None stays None only for variables outside the penalty.
    """
    if not scale:
        return list(grads)
    penalized = {id(v) for v in regularized_variables}
    out = []
    for grad, variable in zip(grads, variables):
        if id(variable) in penalized:
            decay = scale * tf.cast(variable, tf.float32)
            grad = decay if grad is None else grad + tf.cast(decay, grad.dtype)
        out.append(grad)
    return out
