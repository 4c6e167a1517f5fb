"""Inference with and without NMS on a trained model, and serving latency beside the peer.

Part 1, the NMS cost at a trained model's score distribution: the RetinaNet of --model_dir
(restored from its latest checkpoint, params from --config_file; by default the shapes demo
model, `configs/shapes/retinanet.yaml`, 128x128; computing as the executor does: mixed bfloat16
where `use_bfloat16` and the CPU has it natively, else float32, or --precision=float32)
predicts --num_images images of its eval
split (the eval input pipeline: normalize, resize, pad). Variants, each a `tf.function` over
the model fn's PREDICT mode at batch 1 sharing one restored model:

  with NMS       `postprocess` as trained (score_threshold 0.05, pre_nms_num_boxes,
                 max_total_size...): per-class greedy NMS (detection/ops/nms.py)
  without NMS    `postprocess.apply_nms: false`: the best `max_total_size` (anchor, class)
                 pairs above the threshold, no suppression
  NMS, thr 0     with NMS at `score_threshold: 0`: every candidate is alive, NMS runs all its
                 iterations (the upper bound bench/train_step.py times at random init)

with and without XLA (--xla). Every image goes through every variant in turn, so load changes
on a shared machine hit all alike; each call is synchronized by fetching its outputs. Reported
per variant: median wall and CPU milliseconds per image, and with NMS / without NMS as the
ratio of medians and the median of the per-image ratios. The candidates (pairs above the
threshold, what NMS works on) and the detections per image are printed.

Part 2, end-to-end serving latency (--serve_size > 0), the peer's measure (c): the default
R50-FPN RetinaNet params (91 classes, float32) at --serve_size, random initialization, in the
serving module (`detection/serving`, input `image_tensor`: uint8 [1, h, w, 3], normalize,
resize/pad, forward, detection generator, outputs in original pixels) on the first decoded
JPEGs of --serve_data, with and without NMS. At random initialization every score is ~0.01,
below the 0.05 threshold: our NMS then has no candidate (the peer's v2 NMS costs the same
whatever the scores). With --peer_python and --peer_harness, the Model Garden peer's
`DetectionModule.serve` is timed by its harness (`bench/peer_phases.py serve`) between two
rounds of ours.

The load average is printed before and after.

Usage (from the repository root):
  .venv/bin/python bench/inference.py --model_dir=runs/shapes_retinanet \
      [--num_images=50 --serve_size=384 --peer_python=$HOME/.venvs/model-garden/bin/python \
       --peer_harness=../shared/peers/modelgarden_bench.py --json_out=inference.json]
"""

import json
import os
import subprocess
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from detection.configs import loader
from detection.core.modes import EVAL, PREDICT
from detection.dataloader import factory as dataloader_factory
from detection.executor import checkpoints, distribution
from detection.model_fns import factory as model_fn_factory
from detection.serving import factory as serving_factory
from detection.serving import input_types, outputs
from detection.serving.module import ServingModule

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "runs/shapes_retinanet", "Trained RetinaNet (a checkpoint dir).")
flags.DEFINE_string("config_file", "configs/shapes/retinanet.yaml", "Its params.")
flags.DEFINE_string("params_override", "", "Extra params (YAML / JSON / a.b=1 form).")
flags.DEFINE_enum(
    "precision",
    "params",
    ["params", "float32"],
    "Part 1 compute: 'params' = what the executor runs (mixed bfloat16 when "
    "architecture.use_bfloat16 and the CPU has it natively), or float32.",
)
flags.DEFINE_integer("num_images", 50, "Eval images timed per variant.")
flags.DEFINE_integer("warmup", 2, "Untimed calls per variant (the first traces / compiles).")
flags.DEFINE_bool("xla", True, "Also time the XLA-compiled variants.")
flags.DEFINE_integer("serve_size", 384, "Part 2 network input side; 0 skips part 2.")
flags.DEFINE_string(
    "serve_data", "data/shapes/tfrecords/train-*", "TFRecords whose first JPEGs part 2 serves."
)
flags.DEFINE_integer("serve_images", 5, "Timed serving calls per variant and round.")
flags.DEFINE_string("peer_python", "", "Python of the Model Garden virtualenv (part 2).")
flags.DEFINE_string("peer_harness", "", "Path of the peer harness, modelgarden_bench.py.")
flags.DEFINE_integer("peer_steps", 5, "Timed peer serve calls with NMS (it takes seconds each).")
flags.DEFINE_string(
    "json_out", "", "Write the figures here as JSON rows (figure, unit, ours, peer)."
)

_KEYS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


def _load():
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _timed(fn, *args):
    """(wall seconds, process CPU seconds, NumPy outputs) of one synchronized call."""
    start, cpu = time.perf_counter(), time.process_time()
    result = tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    return time.perf_counter() - start, time.process_time() - cpu, result


def _params(postprocess):
    return loader.load_params(
        None, [FLAGS.config_file], FLAGS.params_override, {"postprocess": postprocess}
    )


def _predict_fn(params, model, jit_compile):
    model_fn = model_fn_factory.model_fn_from_params(params)

    def predict(features):
        predictions = model_fn(model, features, None, PREDICT)["predictions"]
        return {key: predictions[key] for key in _KEYS}

    return tf.function(predict, jit_compile=jit_compile)


def _eval_images(params, count):
    """The first `count` eval batches of one image: features with images and image_info."""
    dataset = dataloader_factory.input_fn_from_params(params, EVAL)()
    images = []
    for features, _ in dataset.unbatch().batch(1).take(count):
        images.append({k: features[k] for k in ("images", "image_info", "source_ids")})
    return images


def _summary(walls, cpus):
    return {"ms": 1000 * float(np.median(walls)), "cpu_ms": 1000 * float(np.median(cpus))}


def _trained_model_nms():
    """Part 1; returns {variant: {ms, cpu_ms}} and the NMS / no-NMS ratios."""
    trained = _params({})
    post = trained.postprocess
    model_fn = model_fn_factory.model_fn_from_params(trained)
    if FLAGS.precision == "params":  # As the executor builds it (trainer.build_model).
        model_fn.dtype_policy = distribution.compute_dtype_policy(
            trained.architecture.use_bfloat16, tf.distribute.get_strategy()
        )
    model = model_fn.build_model()
    path = checkpoints.resolve_checkpoint_path(FLAGS.model_dir)
    checkpoints.restore_model(model, path)
    images = _eval_images(trained, FLAGS.num_images)
    size = list(trained.retinanet_parser.output_size)
    anchors = dataloader_factory.anchors_from_params(trained, size)
    num_anchors_x_classes = anchors.num_anchors * (trained.architecture.num_classes - 1)
    variants = {
        "with NMS": _params({"apply_nms": True}),
        "without NMS": _params({"apply_nms": False}),
        "NMS, thr 0": _params({"apply_nms": True, "score_threshold": 0.0}),
    }
    # Every (anchor, class) pair above the threshold: what NMS starts from.
    count_fn = _predict_fn(
        _params({"apply_nms": False, "max_total_size": num_anchors_x_classes}), model, False
    )
    candidates = [int(count_fn(f)["num_detections"][0]) for f in images]
    fns = {}
    for jit in (False, True) if FLAGS.xla else (False,):
        for name, params in variants.items():
            fns[f"{name}, {'XLA' if jit else 'tf.function'}"] = _predict_fn(params, model, jit)
    print(
        f"Part 1: {trained.type} of {path}, {size[0]}x{size[1]}, "
        f"{model_fn.dtype_policy.name}, batch 1, "
        f"{len(images)} eval images of {trained.eval.eval_file_pattern}; postprocess: "
        f"score_threshold {post.score_threshold}, pre_nms_num_boxes {post.pre_nms_num_boxes}, "
        f"max_total_size {post.max_total_size}, nms_iou_threshold {post.nms_iou_threshold}",
        flush=True,
    )
    print(
        f"  candidates (pairs above the threshold) per image: median {np.median(candidates):.0f},"
        f" max {max(candidates)} of {num_anchors_x_classes}",
        flush=True,
    )
    detections = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        for _ in range(FLAGS.warmup):
            _, _, result = _timed(fn, images[0])
        print(f"  {name}: warm-up {time.perf_counter() - start:.1f} s", flush=True)
    walls = {name: [] for name in fns}
    cpus = {name: [] for name in fns}
    for features in images:
        for name, fn in fns.items():
            wall, cpu, result = _timed(fn, features)
            walls[name].append(wall)
            cpus[name].append(cpu)
            detections.setdefault(name, []).append(int(result["num_detections"][0]))
    results = {name: _summary(walls[name], cpus[name]) for name in fns}
    print()
    print("| variant | median ms/image | median CPU ms/image | detections/image (median) |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['ms']:.2f} | {r['cpu_ms']:.2f} | {np.median(detections[name]):.0f} |")
    ratios = {}
    for kind in ("tf.function", "XLA") if FLAGS.xla else ("tf.function",):
        nms = np.array(walls[f"with NMS, {kind}"])
        plain = np.array(walls[f"without NMS, {kind}"])
        nms_cpu = np.array(cpus[f"with NMS, {kind}"])
        plain_cpu = np.array(cpus[f"without NMS, {kind}"])
        ratios[kind] = float(np.median(nms) / np.median(plain))
        print(
            f"{kind}: with NMS / without NMS = {ratios[kind]:.2f} (ratio of medians), "
            f"{np.median(nms / plain):.2f} (median of per-image ratios); CPU "
            f"{np.median(nms_cpu) / np.median(plain_cpu):.2f}"
        )
    return results, ratios


def _serving_module(params, model):
    model_fn = model_fn_factory.model_fn_from_params(params)
    spec = input_types.InputSpec(input_types.IMAGE_TENSOR, 1, (None, None))
    module = ServingModule(
        model_fn,
        model,
        params.type,
        spec,
        serving_factory.network_input_size(params),
        outputs.OutputOptions(),
    )
    return module.concrete_function()


def _raw_images(count):
    """The first `count` decoded JPEGs of --serve_data, [1, h, w, 3] uint8."""
    files = tf.io.gfile.glob(FLAGS.serve_data)
    if not files:
        raise app.UsageError(f"--serve_data={FLAGS.serve_data} matches no file")
    images = []
    for record in tf.data.TFRecordDataset(sorted(files)).take(count):
        example = tf.io.parse_single_example(
            record, {"image/encoded": tf.io.FixedLenFeature((), tf.string)}
        )
        images.append(tf.io.decode_jpeg(example["image/encoded"], channels=3)[None])
    return images


def _peer_serve():
    here = os.path.dirname(os.path.abspath(__file__))
    command = [
        FLAGS.peer_python,
        os.path.join(here, "peer_phases.py"),
        "serve",
        "--harness",
        FLAGS.peer_harness,
        "--",
        "--data",
        FLAGS.serve_data,
        "--size",
        str(FLAGS.serve_size),
        "--infer_warmup",
        str(FLAGS.warmup),
        "--infer_steps",
        str(FLAGS.peer_steps),
        "--infer_no_nms_steps",
        str(FLAGS.serve_images * 2),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the peer serve phase failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _serving_latency():
    """Part 2; returns ({variant: {ms, cpu_ms}} ours, peer result or None)."""
    size = [FLAGS.serve_size, FLAGS.serve_size]
    base = {"retinanet_parser": {"output_size": size}, "architecture": {"use_bfloat16": False}}

    def params(apply_nms):
        return loader.load_params(
            "retinanet", [], "", dict(base, postprocess={"apply_nms": apply_nms})
        )

    keras.utils.set_random_seed(0)
    with_nms = params(True)
    model = model_fn_factory.model_fn_from_params(with_nms).build_model()
    fns = {"with NMS": _serving_module(with_nms, model)}
    fns["without NMS"] = _serving_module(params(False), model)
    images = _raw_images(FLAGS.serve_images)
    print(
        f"\nPart 2: serving latency, default retinanet params (R50-FPN, 91 classes, float32) at "
        f"{size[0]}x{size[1]}, random init, batch 1, uint8 images of {FLAGS.serve_data} "
        f"({images[0].shape[1]}x{images[0].shape[2]})",
        flush=True,
    )
    for name, fn in fns.items():
        for _ in range(FLAGS.warmup):
            _timed(fn, images[0])
    walls = {name: [] for name in fns}
    cpus = {name: [] for name in fns}

    def our_round():
        for image in images:
            for name, fn in fns.items():
                wall, cpu, _ = _timed(fn, image)
                walls[name].append(wall)
                cpus[name].append(cpu)

    our_round()
    peer = None
    if FLAGS.peer_python and FLAGS.peer_harness:
        print("  the peer's serve phase (minutes) ...", flush=True)
        peer = _peer_serve()
        our_round()
    ours = {name: _summary(walls[name], cpus[name]) for name in fns}
    print()
    print("| serving, batch 1 | ours ms | ours CPU ms | peer ms | peer CPU ms | peer / ours |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, key in (("with NMS", "with_nms"), ("without NMS", "without_nms")):
        row = ours[name]
        if peer:
            p = peer[key]
            extra = (
                f"{1000 * p['median_s']:.0f} | {1000 * p['median_cpu_s']:.0f} | "
                f"{p['median_s'] * 1000 / row['ms']:.1f}"
            )
        else:
            extra = "- | - | -"
        print(f"| {name} | {row['ms']:.0f} | {row['cpu_ms']:.0f} | {extra} |")
    return ours, peer


def _json_rows(part1, ratios, serve, peer, size):
    rows = []
    for name, r in part1.items():
        for unit, key in (("ms/image", "ms"), ("CPU ms/image", "cpu_ms")):
            rows.append(
                {
                    "figure": f"inference {name}, shapes RetinaNet {size}px val ({unit})",
                    "unit": unit,
                    "ours": r[key],
                    "peer": None,
                }
            )
    for kind, ratio in ratios.items():
        rows.append(
            {
                "figure": f"inference with NMS / without NMS, shapes RetinaNet, {kind}",
                "unit": "x",
                "ours": ratio,
                "peer": None,
            }
        )
    # Named as bench/report.py names the peer's measure (c), so the two pair up.
    for name, key in (("with NMS", "with_nms"), ("without NMS", "without_nms")):
        if name not in serve:
            continue
        for unit, ours_key, peer_key in (
            ("s/image", "ms", "median_s"),
            ("CPU s/image", "cpu_ms", "median_cpu_s"),
        ):
            rows.append(
                {
                    "figure": f"retinanet inference {name}, batch 1",
                    "unit": unit,
                    "ours": serve[name][ours_key] / 1000,
                    "peer": peer[key][peer_key] if peer else None,
                }
            )
    return rows


def main(argv):
    del argv
    if FLAGS.warmup < 1 or FLAGS.num_images < 1:
        raise app.UsageError("--warmup and --num_images must be >= 1")
    if bool(FLAGS.peer_python) != bool(FLAGS.peer_harness):
        raise app.UsageError("--peer_python and --peer_harness go together")
    load_before = _load()
    print(f"load average before: {load_before}; {len(os.sched_getaffinity(0))} CPUs", flush=True)
    part1, ratios = _trained_model_nms()
    serve, peer = ({}, None) if FLAGS.serve_size <= 0 else _serving_latency()
    print(f"\nload average (1, 5, 15 min) before: {load_before}; after: {_load()}")
    if FLAGS.json_out:
        size = _params({}).retinanet_parser.output_size[0]
        rows = _json_rows(part1, ratios, serve, peer, size)
        with open(FLAGS.json_out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
