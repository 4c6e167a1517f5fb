"""The executor's settings, read from the params tree in one place.

Keys of the original framework used here: `train.{total_steps, iterations_per_loop,
train_batch_size, l2_weight_decay, regularization_variable_regex, frozen_variable_prefix,
gradient_clip_norm, checkpoint.{path, prefix, skip_variables_regex}}`,
`eval.{eval_batch_size, eval_samples, min_eval_interval, eval_timeout, num_steps_per_eval,
skip_eval_loss, suffix}`, `architecture.use_bfloat16`. (`train.optimizer` and
`train.learning_rate` are read by `detection.modeling`.)

Executor keys added by this framework (their defaults are in `detection/configs/base_config.py`,
like every other key's):
- `train.checkpoint_interval` (null): save every this many steps, at a host-loop boundary;
  null means every `iterations_per_loop` steps (every host loop). A checkpoint is also saved at
  the end of training, before each evaluation of train_and_eval, and on SIGTERM.
- `train.checkpoint_max_to_keep` (5): checkpoints kept in model_dir.
- `train.jit_compile` (null): compile the replica step with XLA; null means on for TPU
  (where XLA always compiles) and off for CPU/GPU.
"""

import dataclasses

from detection.executor import distribution


@dataclasses.dataclass(frozen=True)
class ExecutorConfig:
    total_steps: int
    iterations_per_loop: int
    train_batch_size: int
    checkpoint_interval: int
    checkpoint_max_to_keep: int
    jit_compile: bool
    use_bfloat16: bool
    l2_weight_decay: float
    regularization_variable_regex: str | None
    frozen_variable_prefix: str | None
    gradient_clip_norm: float
    warm_start_path: str
    warm_start_prefix: str
    warm_start_skip_regex: str
    eval_batch_size: int
    eval_samples: int | None
    min_eval_interval: float
    eval_timeout: float | None
    num_steps_per_eval: int
    skip_eval_loss: bool
    eval_suffix: str


def _positive(value, key):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


def from_params(params, strategy):
    """Builds the ExecutorConfig of a run (ValueError naming the key on a bad value)."""
    train, evaluation = params.train, params.eval
    iterations_per_loop = _positive(train.iterations_per_loop, "train.iterations_per_loop")
    interval = train.checkpoint_interval
    interval = (
        iterations_per_loop
        if interval is None
        else _positive(interval, "train.checkpoint_interval")
    )
    jit_compile = train.jit_compile
    if jit_compile is None:
        jit_compile = distribution.is_tpu_strategy(strategy)
    if (
        jit_compile
        and params.batch_norm_activation.use_sync_bn
        and not distribution.is_tpu_strategy(strategy)
        and strategy.num_replicas_in_sync > 1
    ):
        # Cross-replica batch norm all-reduces inside the replica step, which MirroredStrategy
        # cannot do from an XLA-compiled function (TPUStrategy compiles the whole step).
        raise ValueError(
            "batch_norm_activation.use_sync_bn=true with train.jit_compile=true "
            "needs a TPU; on CPU/GPU replicas set train.jit_compile: false"
        )
    eval_samples = evaluation.eval_samples
    if eval_samples is not None:
        _positive(eval_samples, "eval.eval_samples")
    checkpoint = train.checkpoint
    return ExecutorConfig(
        total_steps=_positive(train.total_steps, "train.total_steps"),
        iterations_per_loop=iterations_per_loop,
        train_batch_size=_positive(train.train_batch_size, "train.train_batch_size"),
        checkpoint_interval=interval,
        checkpoint_max_to_keep=_positive(
            train.checkpoint_max_to_keep, "train.checkpoint_max_to_keep"
        ),
        jit_compile=bool(jit_compile),
        use_bfloat16=bool(params.architecture.use_bfloat16),
        l2_weight_decay=float(train.l2_weight_decay or 0.0),
        regularization_variable_regex=train.regularization_variable_regex,
        frozen_variable_prefix=train.frozen_variable_prefix,
        gradient_clip_norm=float(train.gradient_clip_norm or 0.0),
        warm_start_path=checkpoint.path or "",
        warm_start_prefix=checkpoint.prefix or "",
        warm_start_skip_regex=checkpoint.skip_variables_regex or "",
        eval_batch_size=_positive(evaluation.eval_batch_size, "eval.eval_batch_size"),
        eval_samples=eval_samples,
        min_eval_interval=float(evaluation.min_eval_interval or 0),
        eval_timeout=evaluation.eval_timeout,
        num_steps_per_eval=_positive(evaluation.num_steps_per_eval, "eval.num_steps_per_eval"),
        skip_eval_loss=bool(evaluation.skip_eval_loss),
        eval_suffix=evaluation.suffix or "",
    )
