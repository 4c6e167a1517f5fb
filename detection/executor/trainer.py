"""The training side of the executor: model + optimizer + checkpoints + host loops.

`Trainer.train(until_step)` runs host loops of at most `iterations_per_loop` steps, cut so
that every multiple of `checkpoint_interval` and `until_step` falls on a loop boundary. At each
boundary it checks the loop's losses (a non-finite total loss raises `NonFiniteLossError`
naming the step, before anything is saved), writes summaries and the progress line, saves when
due, and on SIGTERM saves and raises `TrainingPreempted`.
"""

import logging
import os
import time

import tensorflow as tf

from detection.core import modes
from detection.executor import (
    checkpoints,
    distribution,
    inputs,
    learning_rates,
    optimizers,
    preemption,
    summaries,
    variable_selection,
    warm_start,
)
from detection.executor import train_step as train_step_lib

_log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The total loss became NaN or Inf; the last good checkpoint is left as it was."""


def build_model(model_fn, strategy, use_bfloat16):
    """Sets the model fn's dtype policy and builds its model inside the strategy scope."""
    model_fn.dtype_policy = distribution.compute_dtype_policy(use_bfloat16, strategy)
    with strategy.scope():
        model = model_fn.build_model()
    if not model.variables:
        raise ValueError(
            f"{type(model_fn).__name__}.build_model() returned a model without "
            "variables; build it (call it on a dummy batch) before returning"
        )
    return model


class Trainer:
    """Owns the model, optimizer, checkpoints and train input of a run."""

    def __init__(self, model_fn, params, config, model_dir, strategy):
        """Args:
        model_fn: the ModelFn.
        params: the ParamsDict (optimizer and learning-rate factories read it).
        config: the ExecutorConfig of the run.
        model_dir: where checkpoints and summaries go.
        strategy: the tf.distribute strategy.
        """
        self._model_fn = model_fn
        self._config = config
        self._strategy = strategy
        self._is_chief = distribution.is_chief(strategy)
        self._multi_worker = distribution.num_workers(strategy) > 1
        self.model = build_model(model_fn, strategy, config.use_bfloat16)
        with strategy.scope():
            trained, frozen = variable_selection.split_frozen(
                self.model.trainable_variables, config.frozen_variable_prefix
            )
            if not trained:
                raise ValueError(
                    f"train.frozen_variable_prefix={config.frozen_variable_prefix!r}"
                    " freezes every trainable variable"
                )
            regularized = variable_selection.regularized(
                trained, config.regularization_variable_regex
            )
            self.learning_rate = learning_rates.learning_rate_schedule(
                params.train.learning_rate, config.total_steps
            )
            self.optimizer = optimizers.build_optimizer(params.train.optimizer, self.learning_rate)
            self.optimizer.build(trained)
        self.trained_variables = trained
        self.regularized_variables = regularized
        _log.info(
            "training %d variables (%d frozen), L2 on %d",
            len(trained),
            len(frozen),
            len(regularized),
        )
        self.checkpointer = checkpoints.Checkpointer(
            strategy, self.model, self.optimizer, model_dir, config.checkpoint_max_to_keep
        )
        if self.checkpointer.restore_latest() is None and config.warm_start_path:
            with strategy.scope():
                warm_start.warm_start(
                    self.model,
                    config.warm_start_path,
                    config.warm_start_prefix,
                    config.warm_start_skip_regex,
                )
        self.train_step = train_step_lib.TrainStep(
            strategy,
            model_fn,
            self.model,
            self.optimizer,
            trained,
            regularized,
            config.l2_weight_decay,
            config.gradient_clip_norm,
            config.jit_compile,
        )
        self._writer = summaries.ScalarWriter(
            os.path.join(model_dir, "train"), enabled=self._is_chief
        )
        self._iterator = None
        self.last_losses = {}

    @property
    def step(self):
        return self.checkpointer.step

    def _next_loop_size(self, until_step):
        step, interval = self.step, self._config.checkpoint_interval
        return min(self._config.iterations_per_loop, until_step - step, interval - step % interval)

    def _any_worker_preempted(self, requested):
        if not self._multi_worker:
            return requested
        # Every worker must take part in the save, so all must agree to stop.
        flag = tf.constant(1.0 if requested else 0.0)
        votes = self._strategy.run(lambda x: x, args=(flag,))
        return float(self._strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)) > 0

    def _report(self, step, losses, seconds, steps):
        learning_rate = float(self.learning_rate(step - 1))
        steps_per_second = steps / max(seconds, 1e-9)
        images_per_second = steps_per_second * self._config.train_batch_size
        values = dict(
            losses,
            learning_rate=learning_rate,
            steps_per_second=steps_per_second,
            images_per_second=images_per_second,
        )
        self._writer.write(step, values)
        if self._is_chief:
            eta = (self._config.total_steps - step) / steps_per_second
            print(
                summaries.progress_line(
                    step, self._config.total_steps, losses, learning_rate, images_per_second, eta
                ),
                flush=True,
            )
        return values

    def train(self, until_step):
        """Trains until the global step reaches `until_step`; saves a checkpoint there.

        Returns:
          The last host loop's mean losses plus `learning_rate`, `steps_per_second`,
          `images_per_second` and `step`.

        Raises:
          NonFiniteLossError: the total loss was NaN/Inf (message names the step).
          TrainingPreempted: SIGTERM was received; a checkpoint was saved first.
        """
        until_step = min(until_step, self._config.total_steps)
        if self.step >= until_step:
            return dict(self.last_losses, step=self.step)
        if self._iterator is None:
            dataset = inputs.distributed_dataset(
                self._strategy,
                self._model_fn.input_fn(modes.TRAIN),
                self._config.train_batch_size,
                "train.train_batch_size",
            )
            self._iterator = iter(dataset)
        with preemption.SigtermWatcher() as sigterm:
            while self.step < until_step:
                start_step, num_steps = self.step, self._next_loop_size(until_step)
                start_time = time.time()
                losses, first_bad = self.train_step.run(self._iterator, num_steps)
                if first_bad >= 0:
                    raise NonFiniteLossError(
                        f"the total loss is not finite at step {start_step + first_bad + 1} "
                        f"(host loop of steps {start_step + 1}-{start_step + num_steps}); "
                        f"training stopped, the last checkpoint is "
                        f"{self.checkpointer.latest()}"
                    )
                self.last_losses = self._report(
                    self.step, losses, time.time() - start_time, num_steps
                )
                if self.step % self._config.checkpoint_interval == 0:
                    self.checkpointer.save()
                if self._any_worker_preempted(sigterm.requested):
                    path = self.checkpointer.save() or self.checkpointer.latest()
                    raise preemption.TrainingPreempted(
                        f"SIGTERM received: stopped at step {self.step}, checkpoint {path}"
                    )
            self.checkpointer.save()
        return dict(self.last_losses, step=self.step)
