"""TensorBoard scalars, metric files and the one-line progress report.

Only the chief writes (a non-chief `ScalarWriter` is a no-op). Training scalars go to
`model_dir/train`, evaluation scalars and `metrics-<step>.json` to `model_dir/eval`
(`eval_<suffix>` when `eval.suffix` is set).

Scalars are written with TensorFlow's own `tf.summary.write` and the metadata of TensorBoard's
scalar plugin, so the `tensorboard` package is needed only to view them, not to train.
"""

import json
import math
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# What `tensorboard.summary.scalar` attaches: the scalars dashboard reads these events.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)


class ScalarWriter:
    """Writes dicts of scalars to a TensorBoard event directory."""

    def __init__(self, logdir, enabled=True):
        self._writer = tf.summary.create_file_writer(logdir) if enabled else None

    def write(self, step, values):
        """Writes every finite-or-not float in `values` (name -> number) at `step`."""
        if self._writer is None:
            return
        with self._writer.as_default(step=step):
            for name, value in values.items():
                number = _as_float(value)
                if number is not None:
                    tf.summary.write(
                        name, tf.constant(number, tf.float32), metadata=_SCALAR_METADATA
                    )
        self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()


def _as_float(value):
    array = np.asarray(value)
    if array.ndim != 0 or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array)


def _jsonable(value):
    array = np.asarray(value)
    if array.ndim == 0 and np.issubdtype(array.dtype, np.number):
        number = float(array)
        return number if math.isfinite(number) else str(number)
    if np.issubdtype(array.dtype, np.number):
        return [_jsonable(v) for v in array]
    return str(value)


def write_metrics_json(directory, step, metrics):
    """Writes `directory/metrics-<step>.json` atomically; returns its path."""
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, f"metrics-{step}.json")
    payload = {"step": int(step), "metrics": {k: _jsonable(v) for k, v in metrics.items()}}
    tmp_path = path + ".tmp"
    with tf.io.gfile.GFile(tmp_path, "w") as f:
        f.write(json.dumps(payload, indent=2, sort_keys=True))
    tf.io.gfile.rename(tmp_path, path, overwrite=True)
    return path


def format_duration(seconds):
    """`1h02m`, `3m05s` or `12s`."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _short(name):
    return name[:-5] if name.endswith("_loss") else name


def progress_line(step, total_steps, losses, learning_rate, images_per_second, eta_seconds):
    """`step 600/22500 | loss 1.234 (cls 0.8, box 0.01, l2 0.3) | lr 0.08 | 12.3 img/s | ETA 1h02m`.

    Args:
      step: steps done.
      total_steps: steps of the whole run.
      losses: name -> value, with `total_loss`, `model_loss`, `l2_regularization_loss` and the
        model's named losses (shown in parentheses without their `_loss` suffix).
      learning_rate: the last learning rate applied.
      images_per_second: global examples per second over the last host loop.
      eta_seconds: estimated time to `total_steps`.
    """
    parts = [
        f"{_short(k)} {v:.4g}"
        for k, v in losses.items()
        if k not in ("total_loss", "model_loss", "l2_regularization_loss")
    ]
    if losses.get("l2_regularization_loss"):
        parts.append(f"l2 {losses['l2_regularization_loss']:.4g}")
    loss = f"loss {losses.get('total_loss', float('nan')):.4g}"
    if parts:
        loss += " (" + ", ".join(parts) + ")"
    return (
        f"step {step}/{total_steps} | {loss} | lr {learning_rate:.4g} | "
        f"{images_per_second:.1f} img/s | ETA {format_duration(eta_seconds)}"
    )
