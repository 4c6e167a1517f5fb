"""One evaluation pass: run the eval dataset once, feed the evaluator on the host.

Each batch runs `model_fn(model, features, labels, 'eval')` on every replica; predictions,
`labels['groundtruths']` and `features['valid']` come back to this host as NumPy, local
replicas concatenated along the batch (in replica order, which is dataset order). Eval losses,
when the model fn returns them (and `eval.skip_eval_loss` is false), are averaged over batches
and reported as `losses/<name>` beside the evaluator's metrics.

`eval.eval_samples` stops after that many examples: batches are taken until it is reached, and
examples past it in the last batch are marked invalid in `predictions['valid']`.

Multi-worker: each worker evaluates its own input shard and only the chief writes metrics, so
run evaluation as a single-worker job (continuous eval) when the evaluator needs every example.
"""

import logging
import time

import numpy as np
import tensorflow as tf

from detection.core import modes
from detection.executor import distribution, inputs

_log = logging.getLogger(__name__)


def _to_host(strategy, value, batched):
    parts = [np.asarray(t) for t in strategy.experimental_local_results(value)]
    if not batched:
        return float(np.mean(parts))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


class Evaluation:
    """Runs one evaluation pass over `model_fn.input_fn('eval')`."""

    def __init__(
        self,
        strategy,
        model_fn,
        model,
        eval_batch_size,
        eval_samples=None,
        skip_eval_loss=False,
        jit_compile=False,
    ):
        """Args:
        strategy: the run's strategy.
        model_fn: the ModelFn.
        model: the keras.Model (restored or being trained).
        eval_batch_size: global eval batch size.
        eval_samples: stop after this many examples (None: the whole dataset).
        skip_eval_loss: drop the model fn's eval losses.
        jit_compile: compile the replica eval step with XLA.
        """
        self._strategy = strategy
        self._model_fn = model_fn
        self._model = model
        self._eval_batch_size = eval_batch_size
        self._eval_samples = eval_samples
        self._skip_eval_loss = skip_eval_loss
        self._evaluator = model_fn.build_evaluator()
        if jit_compile and not distribution.is_tpu_strategy(strategy):
            self._forward_fn = tf.function(self._forward, jit_compile=True)
        else:
            self._forward_fn = self._forward
        self._step = tf.function(self._distributed_step)

    def _distributed_step(self, features, labels):
        return self._strategy.run(self._replica_step, args=(features, labels))

    def _forward(self, features, labels):
        outputs = self._model_fn(self._model, features, labels, modes.EVAL)
        if not isinstance(outputs, dict) or "predictions" not in outputs:
            raise ValueError(
                "model fn 'eval' output must be a dict with 'predictions', got "
                f"{type(outputs).__name__}"
            )
        result = {"predictions": dict(outputs["predictions"])}
        if outputs.get("losses") and not self._skip_eval_loss:
            result["losses"] = {k: tf.cast(v, tf.float32) for k, v in outputs["losses"].items()}
        return result

    def _replica_step(self, features, labels):
        result = self._forward_fn(features, labels)
        if isinstance(labels, dict) and "groundtruths" in labels:
            result["groundtruths"] = labels["groundtruths"]
        if isinstance(features, dict) and "valid" in features:
            result["valid"] = features["valid"]
        return result

    def run(self):
        """Evaluates once; returns {metric name: value} (evaluator metrics + `losses/*`)."""
        if self._evaluator is not None:
            self._evaluator.reset()
        dataset = inputs.distributed_dataset(
            self._strategy,
            self._model_fn.input_fn(modes.EVAL),
            self._eval_batch_size,
            "eval.eval_batch_size",
        )
        loss_sums, num_batches, seen = {}, 0, 0
        start = time.time()
        for features, labels in dataset:
            if self._eval_samples is not None and seen >= self._eval_samples:
                break
            outputs = self._step(features, labels)
            predictions = {
                k: _to_host(self._strategy, v, True) for k, v in outputs["predictions"].items()
            }
            size = len(next(iter(predictions.values()))) if predictions else 0
            valid = (
                _to_host(self._strategy, outputs["valid"], True).astype(bool)
                if ("valid" in outputs)
                else None
            )
            if self._eval_samples is not None and seen + size > self._eval_samples:
                in_limit = np.arange(seen, seen + size) < self._eval_samples
                valid = in_limit if valid is None else valid & in_limit
            if valid is not None:
                predictions["valid"] = valid
            groundtruths = None
            if "groundtruths" in outputs:
                groundtruths = {
                    k: _to_host(self._strategy, v, True) for k, v in outputs["groundtruths"].items()
                }
            for name, value in outputs.get("losses", {}).items():
                loss_sums[name] = loss_sums.get(name, 0.0) + _to_host(self._strategy, value, False)
            if self._evaluator is not None:
                self._evaluator.update(predictions, groundtruths)
            num_batches += 1
            seen += size
        if num_batches == 0:
            raise ValueError(
                "the eval dataset produced no batch (check eval.eval_file_pattern "
                "and eval.eval_batch_size)"
            )
        metrics = dict(self._evaluator.evaluate()) if self._evaluator is not None else {}
        for name, total in loss_sums.items():
            metrics[f"losses/{name}"] = total / num_batches
        _log.info(
            "evaluated %d batches (%d examples) in %.1fs", num_batches, seen, time.time() - start
        )
        return metrics
