"""The executor: training, evaluation, checkpoints and summaries on tf.distribute.

Entry point: `detection.executor.run(mode, model_fn, params, model_dir, strategy)`; the model
contract is `detection.core.model_fn.ModelFn`; strategies come from
`detection.executor.distribution.build_strategy`.
"""

from detection.executor.runner import run

__all__ = ["run"]
