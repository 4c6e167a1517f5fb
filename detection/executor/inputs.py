"""Per-host input through `strategy.distribute_datasets_from_function`, with batch checks."""

import logging

import tensorflow as tf

from detection.executor import distribution

_log = logging.getLogger(__name__)


def _leaves_with_paths(structure, prefix=""):
    if isinstance(structure, dict):
        for key in sorted(structure):
            yield from _leaves_with_paths(structure[key], f"{prefix}/{key}" if prefix else key)
    elif isinstance(structure, (list, tuple)):
        for i, value in enumerate(structure):
            yield from _leaves_with_paths(value, f"{prefix}/{i}" if prefix else str(i))
    else:
        yield prefix, structure


def _check_batch_dims(element_spec, per_replica_batch, what):
    features = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    for path, spec in _leaves_with_paths(features):
        if not isinstance(spec, tf.TensorSpec) or spec.shape.rank in (None, 0):
            continue
        size = spec.shape[0]
        if size is None:
            _log.warning(
                "%s: features/%s has an unknown batch size (expected %d); static "
                "shapes are needed on TPU (batch with drop_remainder=True)",
                what,
                path,
                per_replica_batch,
            )
        elif size != per_replica_batch:
            raise ValueError(
                f"{what}: features/{path} has batch size {size} but each replica should get "
                f"{per_replica_batch} (global batch / replicas); use "
                "context.get_per_replica_batch_size(global_batch_size) in the input_fn"
            )


def distributed_dataset(strategy, input_fn, global_batch_size, key):
    """Distributes the datasets `input_fn(context)` builds on each host.

    Args:
      strategy: the run's strategy.
      input_fn: `fn(tf.distribute.InputContext) -> tf.data.Dataset` of per-replica batches
        `(features, labels)`.
      global_batch_size: the global batch size (checked divisible by the replicas).
      key: the params key of the batch size, for error messages.

    Returns:
      A `tf.distribute.DistributedDataset`.
    """
    per_replica = distribution.per_replica_batch_size(
        global_batch_size, strategy.num_replicas_in_sync, key
    )

    def dataset_fn(context):
        dataset = input_fn(context)
        if not isinstance(dataset, tf.data.Dataset):
            raise TypeError(f"input_fn must return a tf.data.Dataset, got {type(dataset).__name__}")
        _check_batch_dims(dataset.element_spec, per_replica, f"input for {key}")
        return dataset

    return strategy.distribute_datasets_from_function(dataset_fn)
