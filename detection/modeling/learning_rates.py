"""Learning-rate schedules of the original framework, as Keras `LearningRateSchedule`s.

Both schedules start with a linear warmup from `warmup_learning_rate` (at step 0) towards
`init_learning_rate` (reached at `warmup_steps`), evaluated at the 0-based step whose gradient
is being applied (the optimizer's `iterations` before the update):

- `step`: after warmup the rate is `init_learning_rate`, replaced by `learning_rate_levels[i]`
  from step `learning_rate_steps[i]` on.
- `cosine`: after warmup, `init * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2`,
  reaching 0 at `total_steps`; later steps stay at 0 (the original let the cosine rise again).

Only `learning_rate_schedule()` reads the params tree; the schedules take plain numbers.
"""

import math

import keras
import tensorflow as tf


def _linear_warmup(step, warmup_learning_rate, warmup_steps, init_learning_rate):
    return warmup_learning_rate + step / warmup_steps * (init_learning_rate - warmup_learning_rate)


@keras.saving.register_keras_serializable(package="detection")
class StepLearningRateWithLinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then a piecewise-constant rate."""

    def __init__(
        self,
        warmup_learning_rate,
        warmup_steps,
        init_learning_rate,
        learning_rate_levels,
        learning_rate_steps,
    ):
        """Args:
        warmup_learning_rate: rate at step 0.
        warmup_steps: steps of linear warmup (0 disables warmup).
        init_learning_rate: rate from `warmup_steps` until the first boundary.
        learning_rate_levels: rates used from each boundary on.
        learning_rate_steps: increasing boundaries, same length as the levels.
        """
        levels, steps = list(learning_rate_levels), list(learning_rate_steps)
        if len(levels) != len(steps):
            raise ValueError(
                f"train.learning_rate.learning_rate_levels ({levels}) and learning_rate_steps "
                f"({steps}) must have the same length"
            )
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"train.learning_rate.learning_rate_steps must increase, got {steps}")
        if warmup_steps < 0:
            raise ValueError(f"train.learning_rate.warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_learning_rate = float(warmup_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.init_learning_rate = float(init_learning_rate)
        self.learning_rate_levels = [float(x) for x in levels]
        self.learning_rate_steps = [int(x) for x in steps]

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.init_learning_rate, tf.float32)
        if self.warmup_steps > 0:
            warmup = _linear_warmup(
                step, self.warmup_learning_rate, self.warmup_steps, self.init_learning_rate
            )
            rate = tf.where(step < self.warmup_steps, warmup, rate)
        for level, start in zip(self.learning_rate_levels, self.learning_rate_steps):
            rate = tf.where(step >= start, tf.constant(level, tf.float32), rate)
        return rate

    def get_config(self):
        return {
            "warmup_learning_rate": self.warmup_learning_rate,
            "warmup_steps": self.warmup_steps,
            "init_learning_rate": self.init_learning_rate,
            "learning_rate_levels": self.learning_rate_levels,
            "learning_rate_steps": self.learning_rate_steps,
        }


@keras.saving.register_keras_serializable(package="detection")
class CosineLearningRateWithLinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup, then a half cosine from `init_learning_rate` to 0 at `total_steps`."""

    def __init__(self, warmup_learning_rate, warmup_steps, init_learning_rate, total_steps):
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"cosine learning rate needs 0 <= train.learning_rate.warmup_steps "
                f"({warmup_steps}) < train.total_steps ({total_steps})"
            )
        self.warmup_learning_rate = float(warmup_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.init_learning_rate = float(init_learning_rate)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = tf.minimum(
            (step - self.warmup_steps) / (self.total_steps - self.warmup_steps), 1.0
        )
        rate = self.init_learning_rate * (tf.cos(math.pi * progress) + 1.0) / 2.0
        if self.warmup_steps > 0:
            warmup = _linear_warmup(
                step, self.warmup_learning_rate, self.warmup_steps, self.init_learning_rate
            )
            rate = tf.where(step < self.warmup_steps, warmup, rate)
        return rate

    def get_config(self):
        return {
            "warmup_learning_rate": self.warmup_learning_rate,
            "warmup_steps": self.warmup_steps,
            "init_learning_rate": self.init_learning_rate,
            "total_steps": self.total_steps,
        }


def learning_rate_schedule(learning_rate_params, total_steps):
    """Builds the schedule named by `train.learning_rate.type`.

    Args:
      learning_rate_params: the `train.learning_rate` ParamsDict.
      total_steps: `train.total_steps` (the end of the cosine decay).

    Returns:
      A `keras.optimizers.schedules.LearningRateSchedule` mapping the 0-based step to a float32
      rate.

    Raises:
      ValueError: unknown type or inconsistent values (the message names the key).
    """
    kind = learning_rate_params.type
    common = dict(
        warmup_learning_rate=learning_rate_params.warmup_learning_rate,
        warmup_steps=learning_rate_params.warmup_steps,
        init_learning_rate=learning_rate_params.init_learning_rate,
    )
    if kind == "step":
        return StepLearningRateWithLinearWarmup(
            learning_rate_levels=learning_rate_params.learning_rate_levels,
            learning_rate_steps=learning_rate_params.learning_rate_steps,
            **common,
        )
    if kind == "cosine":
        return CosineLearningRateWithLinearWarmup(total_steps=total_steps, **common)
    raise ValueError(f"train.learning_rate.type={kind!r} is not supported; use 'step' or 'cosine'")
