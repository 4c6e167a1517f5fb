"""Distribution strategies, per-replica batch sizes and compute precision.

`build_strategy()` must run before TensorFlow touches a device: it may configure logical CPU
devices (tests, `--num_cores` on CPU) and connect to a TPU cluster.
"""

import json
import logging
import os

import keras
import tensorflow as tf

from detection.core import strategies
from detection.executor import bfloat16_support

_log = logging.getLogger(__name__)


def _logical_cpus(count):
    """Splits the host CPU into `count` logical devices; returns their names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if not current or len(current) != count:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
            )
        except RuntimeError as error:
            raise RuntimeError(
                f"cannot create {count} logical CPU devices: TensorFlow is already initialized "
                "(build the strategy before any other TensorFlow work)"
            ) from error
    return [f"/cpu:{i}" for i in range(count)]


def build_strategy(
    strategy_type, tpu=None, tpu_zone=None, gcp_project=None, num_gpus=0, num_cores=None
):
    """Creates the `tf.distribute.Strategy` of a run.

    Args:
      strategy_type: one of `detection.core.strategies.STRATEGY_TYPES`.
      tpu: TPU name or grpc:// address, or 'local' on a TPU VM (strategy_type 'tpu').
      tpu_zone: GCE zone of the TPU.
      gcp_project: GCP project of the TPU.
      num_gpus: GPUs to use ('mirrored', 'one_device'); 0 means CPU.
      num_cores: 'tpu': the expected number of replicas (checked); 'mirrored' on CPU: the
        number of logical CPU devices to create (replicas).

    Returns:
      The strategy.

    Raises:
      ValueError: unknown type, missing TF_CONFIG, too few GPUs or a core-count mismatch.
    """
    if strategy_type == strategies.TPU:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu, zone=tpu_zone, project=gcp_project
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
        if num_cores and strategy.num_replicas_in_sync != num_cores:
            raise ValueError(
                f"--num_cores={num_cores} but TPU '{tpu}' has {strategy.num_replicas_in_sync} cores"
            )
        return strategy
    if strategy_type in (strategies.MIRRORED, strategies.ONE_DEVICE) and num_gpus:
        found = len(tf.config.list_physical_devices("GPU"))
        if found < num_gpus:
            raise ValueError(f"--num_gpus={num_gpus} but this machine has {found} GPU(s)")
    if strategy_type == strategies.MIRRORED:
        if num_gpus:
            return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(num_gpus)])
        if num_cores:
            return tf.distribute.MirroredStrategy(_logical_cpus(num_cores))
        return tf.distribute.MirroredStrategy()
    if strategy_type == strategies.MULTI_WORKER_MIRRORED:
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "strategy_type 'multi_worker_mirrored' needs the TF_CONFIG "
                "environment variable (cluster spec and this task)"
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error
        return tf.distribute.MultiWorkerMirroredStrategy()
    if strategy_type == strategies.ONE_DEVICE:
        return tf.distribute.OneDeviceStrategy("/gpu:0" if num_gpus else "/cpu:0")
    raise ValueError(
        f"unknown strategy_type {strategy_type!r}; use one of "
        + ", ".join(strategies.STRATEGY_TYPES)
    )


def is_tpu_strategy(strategy):
    return isinstance(strategy, tf.distribute.TPUStrategy)


def _is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def num_workers(strategy):
    """Number of worker processes training together (1 unless multi-worker)."""
    if not _is_multi_worker(strategy):
        return 1
    spec = strategy.cluster_resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker"))


def task_id(strategy):
    """Index of this worker process (0 unless multi-worker)."""
    return strategy.cluster_resolver.task_id if _is_multi_worker(strategy) else 0


def is_chief(strategy):
    """True for the one process that writes summaries, params.yaml and real checkpoints."""
    if not _is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().jobs
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def per_replica_batch_size(global_batch_size, num_replicas, key):
    """`global_batch_size / num_replicas`, or a ValueError naming `key` and the numbers."""
    if global_batch_size % num_replicas:
        raise ValueError(
            f"{key}={global_batch_size} is not divisible by the {num_replicas} replicas of the "
            f"strategy; use a multiple of {num_replicas}"
        )
    return global_batch_size // num_replicas


def compute_dtype_policy(use_bfloat16, strategy, cpu_flags=None):
    """The Keras policy of a run: mixed bfloat16 when asked and the devices have it natively.

    Args:
      use_bfloat16: `architecture.use_bfloat16`.
      strategy: the run's strategy (TPU, GPU or CPU devices).
      cpu_flags: the CPU's feature flags (default: this host's; tests pass their own).

    Returns:
      `keras.DTypePolicy("mixed_bfloat16")` on TPUs, AVX512-BF16 / AMX CPUs and GPUs of
      compute capability >= 8.0 when `use_bfloat16`; "float32" otherwise. Either way when
      `use_bfloat16` is true, one log line says which and why.
    """
    if not use_bfloat16:
        return keras.DTypePolicy("float32")
    native, reason = bfloat16_support.native_bfloat16(strategy, cpu_flags)
    if native:
        _log.info("architecture.use_bfloat16 is true and %s: computing in mixed bfloat16", reason)
        return keras.DTypePolicy("mixed_bfloat16")
    _log.info(
        "architecture.use_bfloat16 is true but %s (no native bfloat16): computing in float32",
        reason,
    )
    return keras.DTypePolicy("float32")
