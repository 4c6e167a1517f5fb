"""Optimizers named by `train.optimizer.type`, built for the executor's distributed step.

Supported types (TF1 defaults of the original where Keras differs):

- `momentum`: SGD with `momentum` (default 0.9) and optional `nesterov` (default False).
  Keras applies the rate inside the velocity (`v = m*v - lr*g`) where TF1 applied it outside
  (`a = m*a + g; w -= lr*a`); both agree whenever the rate is constant.
- `sgd`: plain SGD.
- `adam`: Adam with epsilon 1e-8 (TF1 default).
- `adagrad`: Adagrad, initial accumulator 0.1.
- `rmsprop`: RMSProp with decay 0.9, `momentum` (default 0.0) and epsilon 1e-10 (TF1).

Gradient contract: the executor sums gradients across replicas itself (so it can clip the
*global* gradient), then calls `apply()`. Keras's TensorFlow optimizers would sum them across
replicas a second time inside `apply()`; the classes here skip that sum. Under a single replica
they behave exactly like their Keras parents; under several replicas `apply()` must be given
already-summed gradients (as `detection.executor` does).
"""

import keras
import tensorflow as tf

_SUPPORTED = ("momentum", "sgd", "adam", "adagrad", "rmsprop")


def _check_keras_hook():
    # The override below replaces a private method of Keras's TensorFlow optimizer; fail loudly
    # if a Keras upgrade renames it, since gradients would then be summed twice.
    if not hasattr(keras.optimizers.SGD, "_all_reduce_sum_gradients"):
        raise RuntimeError(
            "this Keras version has no Optimizer._all_reduce_sum_gradients; "
            "detection.executor.optimizers must be updated for it"
        )


class _SummedGradientsMixin:
    """Takes gradients that are already summed over replicas."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


class SGD(_SummedGradientsMixin, keras.optimizers.SGD):
    """Keras SGD; with momentum, each update is TensorFlow's fused Keras-momentum kernel.

    `ResourceApplyKerasMomentum` computes Keras' own rule (`v = m*v - lr*g; w += v`, or the
    Nesterov form) in one pass over the weight, velocity and gradient, where Keras' generic
    update runs five element-wise ops per variable; XLA compiles it on TPU.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum == 0 or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        velocity = self.momentums[self._get_variable_index(variable)]
        variable = variable.value if isinstance(variable, keras.Variable) else variable
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle,
            accum=velocity.value.handle,
            lr=tf.cast(learning_rate, dtype),
            grad=tf.cast(gradient, dtype),
            momentum=tf.cast(self.momentum, dtype),
            use_nesterov=self.nesterov,
        )


class Adam(_SummedGradientsMixin, keras.optimizers.Adam):
    pass


class Adagrad(_SummedGradientsMixin, keras.optimizers.Adagrad):
    pass


class RMSprop(_SummedGradientsMixin, keras.optimizers.RMSprop):
    pass


def build_optimizer(optimizer_params, learning_rate):
    """Builds the optimizer of `train.optimizer`.

    Call it inside `strategy.scope()` so its slots are mirrored like the model's variables.

    Args:
      optimizer_params: the `train.optimizer` ParamsDict (or dict): `type`, and per type
        `momentum`, `nesterov`.
      learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.

    Returns:
      A Keras optimizer whose `apply()` expects replica-summed gradients.

    Raises:
      ValueError: unknown `train.optimizer.type` or a bad momentum.
    """
    _check_keras_hook()
    kind = optimizer_params.get("type")
    momentum = optimizer_params.get("momentum", None)
    if kind == "momentum":
        momentum = 0.9 if momentum is None else float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"train.optimizer.momentum must be in [0, 1), got {momentum}")
        return SGD(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=bool(optimizer_params.get("nesterov", False)),
        )
    if kind == "sgd":
        return SGD(learning_rate=learning_rate)
    if kind == "adam":
        return Adam(learning_rate=learning_rate, epsilon=1e-8)
    if kind == "adagrad":
        return Adagrad(learning_rate=learning_rate, initial_accumulator_value=0.1)
    if kind == "rmsprop":
        return RMSprop(
            learning_rate=learning_rate, rho=0.9, momentum=float(momentum or 0.0), epsilon=1e-10
        )
    raise ValueError(
        f"train.optimizer.type={kind!r} is not supported; use one of " + ", ".join(_SUPPORTED)
    )
