"""Milliseconds per multilevel ROI align (ops/roi_align.py), eager / tf.function / XLA, on CPU.

The Mask R-CNN training sizes at a 384 px input: FPN levels 2..6 with 256 channels (96x96 down
to 6x6), batch 2, --num_rois ROIs per image cropped to --output_size (512 ROIs at 7x7 feed the
box head; 128 at 14x14 the mask head). ROIs are seeded random boxes inside the image with
log-uniform sides from 8 to 384 px, so most read the finer levels, as proposals do.

Timed per variant: the forward alone, and forward + backward (the gradient of a sum of squares
with respect to the features, what training adds). Eager runs op by op; `tf.function` without
and with `jit_compile=True`. --warmup calls per variant first (the first one traces and
compiles), then --reps timed calls, alternating between the variants so that load changes on a
shared machine hit them all; each call is synchronized by fetching its result. Reported: the
minimum and the median; the load average is printed before and after.

Usage (from the repository root):
  .venv/bin/python bench/roi_align.py [--num_rois=512 --output_size=7 --reps=10]
"""

import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from detection.ops import roi_align

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 384, "Network input side in pixels.")
flags.DEFINE_integer("batch_size", 2, "Images per call.")
flags.DEFINE_integer("channels", 256, "FPN channels.")
flags.DEFINE_integer("num_rois", 512, "ROIs per image.")
flags.DEFINE_integer("output_size", 7, "Crop side.")
flags.DEFINE_integer("warmup", 2, "Untimed calls per variant.")
flags.DEFINE_integer("reps", 10, "Timed calls per variant.")


def _inputs(rng):
    size, batch = FLAGS.image_size, FLAGS.batch_size
    features = {
        str(level): tf.constant(
            rng.normal(
                size=(batch, -(-size // 2**level), -(-size // 2**level), FLAGS.channels)
            ).astype(np.float32)
        )
        for level in range(2, 7)
    }
    shape = (batch, FLAGS.num_rois)
    sides = np.exp(rng.uniform(np.log(8), np.log(size), size=(2, *shape)))
    y0 = rng.uniform(0, size - sides[0])
    x0 = rng.uniform(0, size - sides[1])
    boxes = np.stack([y0, x0, y0 + sides[0], x0 + sides[1]], -1).astype(np.float32)
    return features, tf.constant(boxes)


def _forward(features, boxes):
    return roi_align.multilevel_roi_align(features, boxes, FLAGS.output_size)


def _forward_backward(features, boxes):
    with tf.GradientTape() as tape:
        tape.watch(features)
        crops = roi_align.multilevel_roi_align(features, boxes, FLAGS.output_size)
        loss = tf.reduce_sum(tf.square(crops))
    return tape.gradient(loss, features)


def main(_):
    features, boxes = _inputs(np.random.default_rng(0))
    levels = roi_align.assign_levels(boxes, 2, 6).numpy()
    counts = {level: int((levels == level).sum()) for level in range(2, 7)}
    print(
        f"batch {FLAGS.batch_size}, {FLAGS.image_size} px, levels 2-6 x {FLAGS.channels} ch, "
        f"{FLAGS.num_rois} ROIs/image at {FLAGS.output_size}x{FLAGS.output_size}; "
        f"ROIs per level {counts}; load average {os.getloadavg()}"
    )
    variants = {}
    for name, fn in (("forward", _forward), ("forward+backward", _forward_backward)):
        variants[f"{name} eager"] = fn
        variants[f"{name} tf.function"] = tf.function(fn)
        variants[f"{name} XLA"] = tf.function(fn, jit_compile=True)
    times = {name: [] for name in variants}
    for _ in range(FLAGS.warmup):
        for fn in variants.values():
            tf.nest.map_structure(lambda t: t.numpy(), fn(features, boxes))
    for _ in range(FLAGS.reps):
        for name, fn in variants.items():
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), fn(features, boxes))
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(
            f"{name:30s} min {1000 * min(values):7.1f} ms   median "
            f"{1000 * np.median(values):7.1f} ms"
        )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
