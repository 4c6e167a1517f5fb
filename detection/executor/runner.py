"""`run(mode, model_fn, params, model_dir, strategy)`: the executor's entry point.

Modes:
- `train`: train to `train.total_steps` (resuming from model_dir's latest checkpoint, else
  warm-starting from `train.checkpoint.path`); returns the last host loop's losses.
- `eval`: continuous evaluation: evaluate each new checkpoint of model_dir
  (`tf.train.checkpoints_iterator`, at most every `eval.min_eval_interval` s, giving up after
  `eval.eval_timeout` s without a new one) and stop after the one at `train.total_steps`;
  returns the last metrics.
- `train_and_eval`: train `eval.num_steps_per_eval` steps, save, evaluate, repeat until
  `train.total_steps`; returns the last metrics.

Metrics are written to TensorBoard under `model_dir/eval` and to
`model_dir/eval/metrics-<step>.json` (`eval_<suffix>` with `eval.suffix`). Flag parsing and
strategy creation belong to the caller (`detection.executor.distribution.build_strategy`).
"""

import logging
import os

import tensorflow as tf

from detection.core import modes
from detection.executor import checkpoints, distribution, evaluation, summaries
from detection.executor import config as config_lib
from detection.executor import trainer as trainer_lib
from detection.hyperparameters import params_dict

_log = logging.getLogger(__name__)


def _eval_dir(model_dir, config):
    return os.path.join(model_dir, f"eval_{config.eval_suffix}" if config.eval_suffix else "eval")


def _make_evaluation(strategy, model_fn, model, config):
    return evaluation.Evaluation(
        strategy,
        model_fn,
        model,
        config.eval_batch_size,
        eval_samples=config.eval_samples,
        skip_eval_loss=config.skip_eval_loss,
        jit_compile=config.jit_compile,
    )


class _MetricsSink:
    """Writes each evaluation's metrics (chief only) and logs them."""

    def __init__(self, model_dir, config, strategy):
        self._directory = _eval_dir(model_dir, config)
        self._enabled = distribution.is_chief(strategy)
        self._writer = summaries.ScalarWriter(self._directory, enabled=self._enabled)

    def __call__(self, step, metrics):
        if self._enabled:
            self._writer.write(step, metrics)
            summaries.write_metrics_json(self._directory, step, metrics)
        _log.info(
            "step %d eval metrics: %s",
            step,
            ", ".join(f"{k}={v}" for k, v in sorted(metrics.items())),
        )
        if self._enabled:
            print(
                f"eval at step {step}: "
                + ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} {v}"
                    for k, v in sorted(metrics.items())
                ),
                flush=True,
            )


def _save_params(params, model_dir, strategy):
    # Only once the trainer has restored (or found no) checkpoint: a run refused for another
    # architecture must leave the params.yaml of the checkpoints' run as it was.
    if distribution.is_chief(strategy):
        params_dict.save_params_dict_to_yaml(params, os.path.join(model_dir, "params.yaml"))


def _train_and_eval(model_fn, params, config, model_dir, strategy):
    trainer = trainer_lib.Trainer(model_fn, params, config, model_dir, strategy)
    _save_params(params, model_dir, strategy)
    evaluator = _make_evaluation(strategy, model_fn, trainer.model, config)
    sink = _MetricsSink(model_dir, config, strategy)
    metrics = None
    while trainer.step < config.total_steps or metrics is None:
        every = config.num_steps_per_eval
        trainer.train((trainer.step // every + 1) * every)
        metrics = evaluator.run()
        sink(trainer.step, metrics)
    return metrics


def _continuous_eval(model_fn, config, model_dir, strategy):
    model = trainer_lib.build_model(model_fn, strategy, config.use_bfloat16)
    evaluator = _make_evaluation(strategy, model_fn, model, config)
    sink = _MetricsSink(model_dir, config, strategy)
    metrics = None
    for path in tf.train.checkpoints_iterator(
        model_dir, min_interval_secs=config.min_eval_interval, timeout=config.eval_timeout
    ):
        step = checkpoints.step_of(path)
        try:
            checkpoints.restore_model(model, path)
        except tf.errors.NotFoundError:
            # Deleted by the trainer's max_to_keep before we got to it (the index goes first).
            _log.warning("checkpoint %s disappeared before evaluation; skipped", path)
            continue
        metrics = evaluator.run()
        sink(step, metrics)
        if step is not None and step >= config.total_steps:
            break
    if metrics is None:
        _log.warning(
            "no checkpoint appeared in %s within eval.eval_timeout=%s s",
            model_dir,
            config.eval_timeout,
        )
    return metrics or {}


def _make_model_dir(model_dir):
    try:
        tf.io.gfile.makedirs(model_dir)
    except tf.errors.OpError as error:
        raise ValueError(
            f"cannot create model_dir {model_dir}: {checkpoints.first_line(error)}"
        ) from None
    if not tf.io.gfile.isdir(model_dir):
        raise ValueError(f"model_dir {model_dir} is not a directory")


def run(mode, model_fn, params, model_dir, strategy):
    """Runs `mode` of a model fn under `strategy`.

    Args:
      mode: 'train', 'eval' or 'train_and_eval'.
      model_fn: a `detection.core.model_fn.ModelFn`.
      params: the experiment's ParamsDict (train.*, eval.*, architecture.use_bfloat16).
      model_dir: directory for checkpoints, summaries, params.yaml and metrics.
      strategy: from `distribution.build_strategy`.

    Returns:
      dict: final losses (train) or final metrics (eval, train_and_eval).

    Raises:
      ValueError: bad mode or params, or a model_dir that cannot be used.
      checkpoints.CheckpointError: model_dir's checkpoints are unreadable or of another
        model (a ValueError).
      trainer.NonFiniteLossError: the loss diverged.
      preemption.TrainingPreempted: SIGTERM (after saving a checkpoint).
    """
    if mode not in modes.RUN_MODES:
        raise ValueError(
            f"unknown executor mode {mode!r}; use one of " + ", ".join(modes.RUN_MODES)
        )
    if not model_dir:
        raise ValueError("model_dir is empty")
    config = config_lib.from_params(params, strategy)
    _make_model_dir(model_dir)
    if mode == modes.TRAIN:
        trainer = trainer_lib.Trainer(model_fn, params, config, model_dir, strategy)
        _save_params(params, model_dir, strategy)
        return trainer.train(config.total_steps)
    if mode == modes.EVAL:
        return _continuous_eval(model_fn, config, model_dir, strategy)
    return _train_and_eval(model_fn, params, config, model_dir, strategy)
