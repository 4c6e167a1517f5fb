"""The `tf.distribute` strategy types `main.py --strategy_type` accepts."""

TPU = "tpu"
MIRRORED = "mirrored"
MULTI_WORKER_MIRRORED = "multi_worker_mirrored"
ONE_DEVICE = "one_device"
STRATEGY_TYPES = (TPU, MIRRORED, MULTI_WORKER_MIRRORED, ONE_DEVICE)
