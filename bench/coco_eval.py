"""Seconds to COCO-evaluate a synthetic 5,000-image set: pycocotools and faster-coco-eval.

The set (seeded): --num_images images of 200-640 px a side, a tenth without groundtruth, the
others with 1-14 objects of --num_classes categories (1 in 20 a crowd, sides 4 px to half the
image, areas from COCO's small to large); detections are 0-3 jittered copies of each object
(one in five labelled with another class) and 0-5 false positives per image, at most
--max_detections, with uniform scores. They go through `COCOEvaluator` as an eval loop feeds it:
padded batches of --batch_size in the documented prediction and groundtruth dicts
(CONVENTIONS.md; image_info of scale 1, so network-input pixels are original pixels),
groundtruth from the batches (no annotation file), then `evaluate()`.

Timed, wall and process CPU seconds: `update` over all batches (results and groundtruth to
COCO dicts) and `evaluate` (index, COCOeval evaluate / accumulate / summarize), once per
backend per round, the backends alternating for --num_rounds rounds. Reported: medians, the
speed-up of evaluate, and the largest difference between the two backends' 12 numbers.
faster-coco-eval comes with the `fast-eval` extra (`eval.use_fast_coco_eval`); without it only
pycocotools is timed.

Usage (from the repository root):
  .venv/bin/python bench/coco_eval.py [--num_images=5000 --num_rounds=2 --json_out=eval.json]
"""

import json
import logging
import os
import statistics
import time

import numpy as np
from absl import app, flags

from detection.evaluation import coco_evaluator, fast_coco

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 5000, "Images in the synthetic set.")
flags.DEFINE_integer("num_classes", 80, "Categories (ids 1..num_classes).")
flags.DEFINE_integer("max_detections", 100, "Detections per image at most (the padded K).")
flags.DEFINE_integer("batch_size", 8, "Images per update() batch.")
flags.DEFINE_integer("num_rounds", 2, "Rounds over the backends.")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic set.")
flags.DEFINE_string(
    "json_out", "", "Write the figures here as JSON rows (figure, unit, ours, peer)."
)

_MAX_OBJECTS = 14


def _synthetic_set(rng):
    """Per image: (height, width, gt boxes [n, 4] yxyx, classes, crowds, dets, classes, scores)."""
    images = []
    for _ in range(FLAGS.num_images):
        height, width = (int(v) for v in rng.integers(200, 641, size=2))
        num = 0 if rng.uniform() < 0.1 else int(rng.integers(1, _MAX_OBJECTS + 1))
        sizes = rng.uniform([4.0, 4.0], [height / 2, width / 2], size=(num, 2))
        corners = rng.uniform(0.0, 1.0, size=(num, 2)) * ([height, width] - sizes)
        boxes = np.concatenate([corners, corners + sizes], axis=1)
        classes = rng.integers(1, FLAGS.num_classes + 1, size=num)
        crowds = (rng.uniform(size=num) < 0.05).astype(np.int32)
        det_boxes, det_classes = [], []
        for box, cls in zip(boxes, classes):
            for _ in range(int(rng.integers(0, 4))):
                jitter = rng.normal(0.0, 0.1, size=4) * np.tile(box[2:] - box[:2], 2)
                det_boxes.append(np.clip(box + jitter, 0, [height, width] * 2))
                other = rng.uniform() < 0.2
                det_classes.append(int(rng.integers(1, FLAGS.num_classes + 1)) if other else cls)
        for _ in range(int(rng.integers(0, 6))):
            side = rng.uniform([4.0, 4.0], [height / 2, width / 2])
            corner = rng.uniform(0.0, 1.0, size=2) * ([height, width] - side)
            det_boxes.append(np.concatenate([corner, corner + side]))
            det_classes.append(int(rng.integers(1, FLAGS.num_classes + 1)))
        det_boxes = np.reshape(det_boxes, [-1, 4])[: FLAGS.max_detections]
        det_classes = np.asarray(det_classes, np.int32)[: FLAGS.max_detections]
        scores = rng.uniform(0.05, 1.0, size=len(det_classes))
        images.append((height, width, boxes, classes, crowds, det_boxes, det_classes, scores))
    return images


def _pad(rows, size, fill, dtype):
    out = np.full((size,) + np.shape(rows)[1:], fill, dtype)
    out[: len(rows)] = rows
    return out


def _batches(images):
    """(predictions, groundtruths) numpy dicts of --batch_size images, the last one padded."""
    k, m, b = FLAGS.max_detections, _MAX_OBJECTS, FLAGS.batch_size
    batches = []
    for start in range(0, len(images), b):
        chunk = images[start : start + b]
        ids = np.full([b], -1, np.int64)
        ids[: len(chunk)] = np.arange(start + 1, start + 1 + len(chunk))
        info = np.zeros([b, 4, 2], np.float32)
        gt = {
            "boxes": np.full([b, m, 4], -1, np.float32),
            "classes": np.full([b, m], -1, np.int32),
            "areas": np.full([b, m], -1, np.float32),
            "is_crowds": np.zeros([b, m], np.int32),
            "num_detections": np.zeros([b], np.int32),
            "height": np.zeros([b], np.float32),
            "width": np.zeros([b], np.float32),
        }
        pred = {
            "detection_boxes": np.zeros([b, k, 4], np.float32),
            "detection_classes": np.zeros([b, k], np.int32),
            "detection_scores": np.zeros([b, k], np.float32),
            "num_detections": np.zeros([b], np.int32),
        }
        for i, (height, width, boxes, classes, crowds, dets, det_cls, scores) in enumerate(chunk):
            info[i] = [[height, width], [height, width], [1.0, 1.0], [0.0, 0.0]]
            gt["boxes"][i] = _pad(boxes, m, -1, np.float32)
            gt["classes"][i] = _pad(classes, m, -1, np.int32)
            gt["areas"][i] = _pad(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1), m, -1, np.float32)
            gt["is_crowds"][i] = _pad(crowds, m, 0, np.int32)
            gt["num_detections"][i] = len(classes)
            gt["height"][i], gt["width"][i] = height, width
            pred["detection_boxes"][i] = _pad(dets, k, 0, np.float32)
            pred["detection_classes"][i] = _pad(det_cls, k, 0, np.int32)
            pred["detection_scores"][i] = _pad(scores, k, 0, np.float32)
            pred["num_detections"][i] = len(det_cls)
        batches.append((dict(pred, source_id=ids, image_info=info), dict(gt, source_id=ids)))
    return batches


def _clock():
    return time.perf_counter(), time.process_time()


def _since(start):
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def _run(batches, use_fast):
    """(update (wall, cpu) seconds, evaluate (wall, cpu) seconds, metrics)."""
    evaluator = coco_evaluator.COCOEvaluator(
        num_classes=FLAGS.num_classes + 1, use_fast_coco_eval=use_fast
    )
    start = _clock()
    for predictions, groundtruths in batches:
        evaluator.update(predictions, groundtruths)
    update = _since(start)
    start = _clock()
    metrics = evaluator.evaluate()
    return update, _since(start), metrics


def _load():
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv):
    del argv
    # The evaluator logs COCOeval's summary table at INFO on every run; the bench prints its own.
    logging.getLogger("detection.evaluation").setLevel(logging.WARNING)
    load_before = _load()
    images = _synthetic_set(np.random.default_rng(FLAGS.seed))
    batches = _batches(images)
    num_gt = sum(len(image[3]) for image in images)
    num_dets = sum(len(image[6]) for image in images)
    backends = {"pycocotools": False}
    if fast_coco.is_available():
        backends["faster-coco-eval"] = True
    print(
        f"COCO evaluation of {len(images)} synthetic images ({num_gt} objects, "
        f"{sum(int(image[4].sum()) for image in images)} crowds, {num_dets} detections, "
        f"{FLAGS.num_classes} classes), batches of {FLAGS.batch_size}, groundtruth from the "
        f"batches; backends: {', '.join(backends)}; load average before: {load_before}",
        flush=True,
    )
    times = {name: {"update": [], "evaluate": []} for name in backends}
    metrics = {}
    for round_index in range(FLAGS.num_rounds):
        for name, use_fast in backends.items():
            update, evaluate, metrics[name] = _run(batches, use_fast)
            times[name]["update"].append(update)
            times[name]["evaluate"].append(evaluate)
            print(
                f"  round {round_index + 1}, {name}: update {update[0]:.1f} s "
                f"(CPU {update[1]:.1f}), evaluate {evaluate[0]:.1f} s (CPU {evaluate[1]:.1f})",
                flush=True,
            )
    summary = {
        name: {
            phase: (
                statistics.median(t[0] for t in values),
                statistics.median(t[1] for t in values),
            )
            for phase, values in phases.items()
        }
        for name, phases in times.items()
    }
    print()
    print("| backend | update s | update CPU s | evaluate s | evaluate CPU s |")
    print("|---|---:|---:|---:|---:|")
    for name, phases in summary.items():
        (uw, uc), (ew, ec) = phases["update"], phases["evaluate"]
        print(f"| {name} | {uw:.1f} | {uc:.1f} | {ew:.1f} | {ec:.1f} |")
    slow = [metrics["pycocotools"][k] for k in coco_evaluator.METRIC_NAMES]
    print(f"AP {slow[0]:.4f}, AP50 {slow[1]:.4f}, ARmax100 {slow[8]:.4f} (pycocotools)")
    rows = [
        {
            "figure": f"COCO evaluate(), {len(images)} synthetic images, pycocotools (s)",
            "unit": "s",
            "ours": summary["pycocotools"]["evaluate"][0],
            "peer": None,
        }
    ]
    if "faster-coco-eval" in summary:
        fast = [metrics["faster-coco-eval"][k] for k in coco_evaluator.METRIC_NAMES]
        difference = max(abs(a - b) for a, b in zip(fast, slow))
        speedup = summary["pycocotools"]["evaluate"][0] / summary["faster-coco-eval"]["evaluate"][0]
        cpu_speedup = (
            summary["pycocotools"]["evaluate"][1] / summary["faster-coco-eval"]["evaluate"][1]
        )
        print(
            f"faster-coco-eval: evaluate {speedup:.1f} x faster (CPU {cpu_speedup:.1f} x); "
            f"largest difference of the 12 numbers: {difference:.3g}"
            f"{' (identical)' if fast == slow else ''}"
        )
        rows.append(
            {
                "figure": f"COCO evaluate(), {len(images)} synthetic images, faster-coco-eval (s)",
                "unit": "s",
                "ours": summary["faster-coco-eval"]["evaluate"][0],
                "peer": None,
            }
        )
    print(f"load average (1, 5, 15 min) before: {load_before}; after: {_load()}")
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
