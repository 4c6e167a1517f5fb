"""The contract between a model family and the executor.

A *model fn* is a small object per model type (RetinaNet, Mask R-CNN, classification...). It
knows boxes, losses and input pipelines; the executor knows strategies, host loops,
checkpoints and summaries. Models never see the strategy; the executor never sees boxes.

    class ModelFn:
        def __init__(self, params)
        def build_model(self) -> keras.Model
        def __call__(self, model, features, labels, mode) -> dict
        def input_fn(self, mode) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]
        def build_evaluator(self) -> evaluator | None

`build_model()` is called once, inside `strategy.scope()`, and must create every variable
(build the model on a dummy input if needed). Before calling it the executor sets
`self.dtype_policy`: a `keras.DTypePolicy` ("mixed_bfloat16" when
`architecture.use_bfloat16` is true and the devices have native bfloat16: TPU, AVX512-BF16 /
AMX CPU, GPU >= 8.0; else "float32"); the model must hand it to its layers
(`dtype=self.dtype_policy`) and cast its outputs to float32 before computing losses.

`__call__(model, features, labels, mode)` runs inside one replica on that replica's local
batch `b = global batch / num_replicas`:

Modes are the strings of `detection.core.modes` (`TRAIN`, `EVAL`, `PREDICT`).

- mode "train": returns `{'total_loss': scalar float32, 'losses': {name: scalar}}`, where
  `total_loss` is the mean over the LOCAL batch *without* L2 weight decay (the executor adds
  L2 from `train.l2_weight_decay` and divides by the number of replicas, so that the summed
  gradient is the gradient of the global mean).
- mode "eval": returns `{'predictions': {name: [b, ...]}, 'losses': {name: scalar}}`
  (`losses` optional). Every prediction has the local batch as first dimension.
- mode "predict": returns `{'predictions': {name: [b, ...]}}`.

`input_fn(mode)` returns a function of a `tf.distribute.InputContext` that builds this host's
`tf.data.Dataset` of per-replica batches `(features, labels)`:
`context.get_per_replica_batch_size(global_batch_size)` examples each, static shapes, sharded
with `context.num_input_pipelines` / `context.input_pipeline_id`. The train dataset repeats
forever; the eval dataset is finite (one pass), padding its last batch to full size and
marking padding with `features['valid']: [b] bool`.

`build_evaluator()` returns None or an object with
`update(predictions: dict[str, np.ndarray], groundtruths: dict[str, np.ndarray] | None)`,
`evaluate() -> dict[str, float]` and `reset()`. The executor brings each eval batch to host
NumPy (local replicas concatenated along the batch), passes `labels['groundtruths']` when the
labels have it, and adds `predictions['valid']` when the features have `valid` (or when
`eval.eval_samples` cuts the last batch).
"""

import keras


class ModelFn:
    """Base class of model fns; subclasses implement the methods below.

    Attributes:
      params: the experiment's ParamsDict.
      dtype_policy: the `keras.DTypePolicy` that `build_model()` hands to its layers; set by
        the executor before `build_model()` (float32 until then).
    """

    def __init__(self, params):
        self.params = params
        self.dtype_policy = keras.DTypePolicy("float32")

    def build_model(self):
        """Returns a built `keras.Model` (all variables created)."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_model()")

    def __call__(self, model, features, labels, mode):
        """Runs the model on one replica's batch; see the module docstring for outputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement __call__()")

    def input_fn(self, mode):
        """Returns `fn(tf.distribute.InputContext) -> tf.data.Dataset` for `mode`."""
        raise NotImplementedError(f"{type(self).__name__} must implement input_fn()")

    def build_evaluator(self):
        """Returns an evaluator (update / evaluate / reset) or None."""
        return None
