"""Learning-rate schedules of the original framework, as Keras `LearningRateSchedule`s.

A schedule is a decay wrapped in a linear warmup. Every schedule is evaluated at the 0-based
step whose gradient is being applied (the optimizer's `iterations` before the update).

- `LinearWarmup(decay, warmup_steps, warmup_learning_rate)`: from `warmup_learning_rate` at
  step 0 linearly towards `decay(warmup_steps)`, reached at `warmup_steps`; `decay(step)` from
  then on. It wraps any decay, so a new decay never needs its own warmup copy.
- `StepDecay`: `init_learning_rate`, replaced by `learning_rate_levels[i]` from step
  `learning_rate_steps[i]` on (`train.learning_rate.type: step`).
- `CosineDecay`: from `start_step` on, `init * (1 + cos(pi * (step - start) / (total - start)))
  / 2`, reaching 0 at `total_steps`; later steps stay at 0 (the original let the cosine rise
  again) (`type: cosine`; the cosine starts where the warmup ends).

Only `learning_rate_schedule()` reads the params tree; the schedules take plain numbers.
"""

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="detection")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """A piecewise-constant rate."""

    def __init__(self, init_learning_rate, learning_rate_levels, learning_rate_steps):
        """Args:
        init_learning_rate: rate until the first boundary.
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
        self.init_learning_rate = float(init_learning_rate)
        self.learning_rate_levels = [float(x) for x in levels]
        self.learning_rate_steps = [int(x) for x in steps]

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.init_learning_rate, tf.float32)
        for level, start in zip(self.learning_rate_levels, self.learning_rate_steps):
            rate = tf.where(step >= start, tf.constant(level, tf.float32), rate)
        return rate

    def get_config(self):
        return {
            "init_learning_rate": self.init_learning_rate,
            "learning_rate_levels": self.learning_rate_levels,
            "learning_rate_steps": self.learning_rate_steps,
        }


@keras.saving.register_keras_serializable(package="detection")
class CosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """A half cosine from `init_learning_rate` at `start_step` to 0 at `total_steps`."""

    def __init__(self, init_learning_rate, total_steps, start_step=0):
        if not 0 <= start_step < total_steps:
            raise ValueError(
                f"cosine learning rate needs 0 <= train.learning_rate.warmup_steps "
                f"({start_step}) < train.total_steps ({total_steps})"
            )
        self.init_learning_rate = float(init_learning_rate)
        self.total_steps = int(total_steps)
        self.start_step = int(start_step)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = (step - self.start_step) / (self.total_steps - self.start_step)
        progress = tf.clip_by_value(progress, 0.0, 1.0)
        return self.init_learning_rate * (tf.cos(math.pi * progress) + 1.0) / 2.0

    def get_config(self):
        return {
            "init_learning_rate": self.init_learning_rate,
            "total_steps": self.total_steps,
            "start_step": self.start_step,
        }


@keras.saving.register_keras_serializable(package="detection")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup in front of any schedule."""

    def __init__(self, decay, warmup_steps, warmup_learning_rate):
        """Args:
        decay: the `LearningRateSchedule` used from `warmup_steps` on.
        warmup_steps: steps of linear warmup (0 disables warmup).
        warmup_learning_rate: rate at step 0.
        """
        if warmup_steps < 0:
            raise ValueError(f"train.learning_rate.warmup_steps must be >= 0, got {warmup_steps}")
        self.decay = decay
        self.warmup_steps = int(warmup_steps)
        self.warmup_learning_rate = float(warmup_learning_rate)

    def __call__(self, step):
        rate = self.decay(step)
        if self.warmup_steps == 0:
            return rate
        step = tf.cast(step, tf.float32)
        target = self.decay(self.warmup_steps)
        warmup = self.warmup_learning_rate + step / self.warmup_steps * (
            target - self.warmup_learning_rate
        )
        return tf.where(step < self.warmup_steps, warmup, rate)

    def get_config(self):
        return {
            "decay": keras.saving.serialize_keras_object(self.decay),
            "warmup_steps": self.warmup_steps,
            "warmup_learning_rate": self.warmup_learning_rate,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config, decay=keras.saving.deserialize_keras_object(config["decay"]))
        return cls(**config)


def learning_rate_schedule(learning_rate_params, total_steps):
    """Builds the schedule named by `train.learning_rate.type`, with its warmup.

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
    init = learning_rate_params.init_learning_rate
    warmup_steps = learning_rate_params.warmup_steps
    if kind == "step":
        decay = StepDecay(
            init,
            learning_rate_params.learning_rate_levels,
            learning_rate_params.learning_rate_steps,
        )
    elif kind == "cosine":
        decay = CosineDecay(init, total_steps, start_step=warmup_steps)
    else:
        raise ValueError(
            f"train.learning_rate.type={kind!r} is not supported; use 'step' or 'cosine'"
        )
    return LinearWarmup(decay, warmup_steps, learning_rate_params.warmup_learning_rate)
