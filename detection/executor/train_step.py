"""The distributed training step and the host loop that runs many of them per call.

One replica step: the model fn's local loss plus L2 -> gradient of `loss / num_replicas` (the
L2 term's gradient added in closed form)
(compiled with XLA when `jit_compile`) -> SUM over replicas (= gradient of the global mean) ->
global-norm clipping -> optimizer update. Clipping after the sum makes the result independent
of how the global batch is split across replicas.

The host loop is one `tf.function` running `num_steps` replica steps in a `tf.range` loop, so a
TPU runs `iterations_per_loop` steps per host round trip. It returns the mean of each reported
loss over the loop and the index of the first step whose total loss was not finite (-1 if
none). Loss names are only known once the model fn is traced, so the means travel as a
fixed-size vector (`MAX_REPORTED_LOSSES`) whose first entries are named by `loss_names`.
"""

import logging

import tensorflow as tf

from detection.core import modes
from detection.executor import distribution, variable_selection

MAX_REPORTED_LOSSES = 64
# Reported by the executor itself; a model fn's `losses` with these names are ignored.
EXECUTOR_LOSSES = ("total_loss", "model_loss", "l2_regularization_loss")

_log = logging.getLogger(__name__)


def _as_scalar(value, what):
    value = tf.convert_to_tensor(value)
    if value.shape.rank != 0:
        raise ValueError(
            f"model fn 'train' output {what} must be a scalar, got shape {value.shape}"
        )
    return tf.cast(value, tf.float32)


class TrainStep:
    """Builds the host-loop function `loop(iterator, num_steps)`.

    Attributes:
      loss_names: names of the entries of the returned loss vector, in order (set when the
        loop is first traced).
      compute_gradients: the per-replica forward/backward function
        `(features, labels) -> (grads, losses)`, a `tf.function(jit_compile=True)` when XLA
        is on (its `experimental_get_compiler_ir` shows the compiled HLO).
    """

    def __init__(
        self,
        strategy,
        model_fn,
        model,
        optimizer,
        trained_variables,
        regularized_variables,
        l2_weight_decay,
        gradient_clip_norm,
        jit_compile,
    ):
        """Args:
        strategy: the tf.distribute strategy (the model and optimizer live in its scope).
        model_fn: the ModelFn; called as `model_fn(model, features, labels, 'train')`.
        model: the keras.Model.
        optimizer: an optimizer from `detection.executor.optimizers` (expects summed
          gradients), built on `trained_variables`.
        trained_variables: variables to update.
        regularized_variables: variables in the L2 penalty.
        l2_weight_decay: L2 weight (see `variable_selection.l2_loss`).
        gradient_clip_norm: global-norm clip of the summed gradient; <= 0 disables.
        jit_compile: compile the replica forward/backward pass with XLA (implicit on TPU).
        """
        self._strategy = strategy
        self._model_fn = model_fn
        self._model = model
        self._optimizer = optimizer
        self._trained = list(trained_variables)
        self._regularized = list(regularized_variables)
        self._l2_weight_decay = float(l2_weight_decay or 0.0)
        self._clip_norm = float(gradient_clip_norm or 0.0)
        self.loss_names = None
        # TPUStrategy compiles the whole host loop with XLA already; a nested must-compile
        # function is only needed (and only wanted) on CPU/GPU.
        if jit_compile and not distribution.is_tpu_strategy(strategy):
            self.compute_gradients = tf.function(self._compute_gradients, jit_compile=True)
        else:
            self.compute_gradients = self._compute_gradients
        self.loop = tf.function(self._loop)
        # Keras 3 creates non-trainable variables (batch-norm moving statistics, moving loss
        # normalizers) with aggregation NONE: under a multi-replica strategy each replica
        # would update its own copy and the copies would drift apart (a checkpoint keeps one
        # of them). Averaging the copies after each step keeps one value; it is a few
        # kilobytes per layer next to the gradient all-reduce.
        self._replica_local = [
            v for v in model.non_trainable_variables if getattr(v, "aggregation", "none") == "none"
        ]

    def _compute_gradients(self, features, labels):
        num_replicas = self._strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            outputs = self._model_fn(self._model, features, labels, modes.TRAIN)
            if not isinstance(outputs, dict) or "total_loss" not in outputs:
                raise ValueError(
                    "model fn 'train' output must be a dict with 'total_loss', got "
                    f"{type(outputs).__name__} {outputs!r}"[:300]
                )
            model_loss = _as_scalar(outputs["total_loss"], "'total_loss'")
        grads = tape.gradient(model_loss / num_replicas, self._trained)
        # The L2 penalty's gradient is added directly (same values, one add per weight).
        l2_loss = variable_selection.l2_loss(self._regularized, self._l2_weight_decay)
        total_loss = model_loss + l2_loss
        grads = variable_selection.add_l2_gradients(
            grads, self._trained, self._regularized, self._l2_weight_decay / num_replicas
        )
        missing = [
            variable_selection.tf1_name(v) for v, g in zip(self._trained, grads) if g is None
        ]
        if missing:
            _log.warning(
                "no gradient for %d trained variables (left unchanged): %s",
                len(missing),
                ", ".join(missing),
            )
        grads = [tf.zeros_like(v) if g is None else g for v, g in zip(self._trained, grads)]
        losses = {
            "total_loss": total_loss,
            "model_loss": model_loss,
            "l2_regularization_loss": l2_loss,
        }
        for name, value in (outputs.get("losses") or {}).items():
            if name not in EXECUTOR_LOSSES:
                losses[name] = _as_scalar(value, f"losses[{name!r}]")
        return grads, losses

    def _replica_step(self, features, labels):
        grads, losses = self.compute_gradients(features, labels)
        context = tf.distribute.get_replica_context()
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if self._clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, self._clip_norm)
        self._optimizer.apply(grads, self._trained)
        if self._replica_local and self._strategy.num_replicas_in_sync > 1:
            means = context.all_reduce(
                tf.distribute.ReduceOp.MEAN, [tf.identity(v.value) for v in self._replica_local]
            )
            for variable, mean in zip(self._replica_local, means):
                variable.assign(mean)
        return losses

    def _pack(self, per_replica_losses):
        names = list(EXECUTOR_LOSSES) + sorted(
            k for k in per_replica_losses if k not in EXECUTOR_LOSSES
        )
        if len(names) > MAX_REPORTED_LOSSES:
            raise ValueError(
                f"model fn reports {len(names)} losses; at most {MAX_REPORTED_LOSSES} are supported"
            )
        self.loss_names = names
        values = [
            self._strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica_losses[k], axis=None)
            for k in names
        ]
        return tf.pad(tf.stack(values), [[0, MAX_REPORTED_LOSSES - len(names)]])

    def _loop(self, iterator, num_steps):
        totals = tf.zeros([MAX_REPORTED_LOSSES], tf.float32)
        first_bad = tf.constant(-1, tf.int64)
        for i in tf.range(num_steps):
            features, labels = next(iterator)
            losses = self._strategy.run(self._replica_step, args=(features, labels))
            values = self._pack(losses)
            totals += values
            is_bad = tf.logical_not(tf.math.is_finite(values[0]))
            first_bad = tf.where(is_bad & (first_bad < 0), tf.cast(i, tf.int64), first_bad)
        return totals / tf.cast(num_steps, tf.float32), first_bad

    def run(self, iterator, num_steps):
        """Runs `num_steps` steps; returns ({name: mean loss}, first non-finite index or -1)."""
        means, first_bad = self.loop(iterator, tf.constant(num_steps, tf.int64))
        means = means.numpy()
        return (
            {name: float(means[i]) for i, name in enumerate(self.loss_names)},
            int(first_bad.numpy()),
        )
