"""Seconds per R50-FPN train step and per inference, with and without XLA, on CPU.

--model=retinanet (default): the default `retinanet` params (ResNet-50, FPN P3-P7, 4x256
head, 91 classes, float32). --model=mask_rcnn / cascade_mask_rcnn: the default `mask_rcnn`
params (ResNet-50, FPN P2-P6, RPN, 2-fc box head, 4-conv mask head, 91 classes, 512 sampled
ROIs and 128 masks per image); --params_override changes them (e.g.
"frcnn_head: {num_convs: 4, num_fcs: 1}", TF Model Garden's 4conv1fc box head). The parser's
`output_size` is set to --output_size. Measured:

- train step: forward, focal + Huber loss, L2, backward, momentum-SGD update (the executor's
  step without a distribution strategy), at --batch_size, as one `tf.function` (a) without
  XLA and (b) with `jit_compile=True`;
- inference: forward + decode + per-class NMS (the model fn's predict mode) at
  --infer_batch_size, the same two ways. `postprocess.score_threshold` is set to
  --infer_score_threshold (default 0): at random initialization every score is ~0.01, so the
  default 0.05 would leave no NMS candidate and skip the NMS loop; with 0 every candidate is
  live and NMS runs all its `max_total_size` iterations, the cost of a crowded image with a
  trained model (an upper bound).

Inputs are fixed: RetinaNet gets seeded random normal images and targets from the
AnchorLabeler on --num_boxes random boxes per image; Mask R-CNN gets one batch of its own
training input pipeline (parser, RPN targets, instance masks) on --data, the TFRecords the
Model Garden peer harness reads too (../shared/peers). Every step sees the same batch. Each
variant has its own model built from the same seed. --warmup_steps calls per variant come
first (the first one traces and compiles; its time is shown apart), then --num_steps timed
calls, alternating between the variants so that load changes on a shared machine hit both;
each call is synchronized by fetching its result with `.numpy()`. Reported: median and p90
seconds, the median CPU seconds of the process (the work done, steadier than wall time on a
shared machine), and XLA / no-XLA ratios. The load average is printed before and after,
since the machine may be shared.

Beside the peer: with --peer_python (the Model Garden virtualenv's Python, see
../shared/peers/README.md) the timed calls are split into --num_rounds rounds, and after each
round the peer harness's own train step (its measure (b), `tf.function(task.train_step)` on
batches of its own pipeline from --data) runs in each of --precisions in a subprocess
(`bench/peer_phases.py train`), --num_steps timed calls after --warmup_steps, on the wall and
the CPU clock. Ours and the peer's then alternate round by round in one session, and the
ratios are printed per round and over all rounds (RetinaNet only).

Usage (from the repository root):
  .venv/bin/python bench/train_step.py [--num_steps=10 --output_size=384 --batch_size=2]
  .venv/bin/python bench/train_step.py --noxla --noinference --precisions=float32,bfloat16 \
      --num_rounds=3 --peer_python=$HOME/.venvs/model-garden/bin/python
  .venv/bin/python bench/train_step.py --model=mask_rcnn --data='data/shapes/tfrecords/train-*' \
      [--params_override='frcnn_head: {num_convs: 4, num_fcs: 1}']
"""

import json
import os
import subprocess
import tempfile
import time

import keras
import numpy as np
import op_profile  # bench/op_profile.py, beside this script
import tensorflow as tf
from absl import app, flags

from detection.configs import loader
from detection.core.modes import PREDICT, TRAIN
from detection.dataloader import factory as dataloader_factory
from detection.dataloader.anchor_labeler import AnchorLabeler
from detection.executor import bfloat16_support, learning_rates, optimizers, variable_selection
from detection.model_fns import factory as model_fn_factory

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "model", "retinanet", ["retinanet", "mask_rcnn", "cascade_mask_rcnn"], "Model type."
)
flags.DEFINE_string("params_override", "", "Extra params (YAML / JSON / a.b=1 form).")
flags.DEFINE_string(
    "data", "data/shapes/tfrecords/train-*", "Training TFRecords (with masks) for Mask R-CNN."
)
flags.DEFINE_integer("output_size", 384, "Network input side in pixels.")
flags.DEFINE_integer("batch_size", 2, "Images per train step.")
flags.DEFINE_integer("infer_batch_size", 1, "Images per inference call.")
flags.DEFINE_integer("num_boxes", 6, "Random groundtruth boxes per training image.")
flags.DEFINE_integer("warmup_steps", 2, "Untimed calls per variant (the first compiles).")
flags.DEFINE_integer("num_steps", 10, "Timed calls per variant and round.")
flags.DEFINE_integer("num_rounds", 1, "Rounds of timed calls (the peer runs after each).")
flags.DEFINE_string(
    "peer_python",
    "",
    "The peer's Python (e.g. ~/.venvs/model-garden/bin/python): after each round, time the "
    "Model Garden harness's RetinaNet train step in each of --precisions.",
)
flags.DEFINE_string(
    "peer_harness",
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers", "modelgarden_bench.py"),
    "The peer harness (with --peer_python).",
)
flags.DEFINE_float(
    "infer_score_threshold",
    0.0,
    "postprocess.score_threshold for inference (see the module docstring).",
)
flags.DEFINE_integer("seed", 0, "Seed of the inputs and of the model initialization.")
flags.DEFINE_bool("xla", True, "Also time the XLA-compiled variants (they compile for minutes).")
flags.DEFINE_list(
    "precisions",
    ["float32"],
    "Compute precisions of the train step, timed alternately: float32 and/or bfloat16 (the "
    "Keras mixed_bfloat16 policy that `architecture.use_bfloat16` selects on hardware with "
    "native bfloat16).",
)
flags.DEFINE_bool("inference", True, "Also time inference (float32).")
flags.DEFINE_string(
    "json_out", "", "Write the figures here as a JSON list of {figure, unit, ours, peer} rows."
)
flags.DEFINE_integer(
    "profile_steps",
    0,
    "After timing, profile this many calls of the train step (tf.function, no XLA) and print "
    "the op time per model component and op type (bench/op_profile.py).",
)
flags.DEFINE_string("profile_dir", "", "Where the profile goes (default: a temporary directory).")


_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def _parser_key():
    return "retinanet_parser" if FLAGS.model == "retinanet" else "maskrcnn_parser"


def _params(score_threshold=None):
    size = [FLAGS.output_size, FLAGS.output_size]
    override = {
        _parser_key(): {"output_size": size},
        "architecture": {"use_bfloat16": False},
        "train": {"train_batch_size": FLAGS.batch_size, "train_file_pattern": FLAGS.data},
    }
    if score_threshold is not None:
        override["postprocess"] = {"score_threshold": score_threshold}
    params = loader.load_params(FLAGS.model, [], FLAGS.params_override, override)
    return params


def _features(rng, batch_size):
    side = float(FLAGS.output_size)
    image_info = np.tile(
        np.array([[side, side], [side, side], [1.0, 1.0], [0.0, 0.0]], np.float32),
        [batch_size, 1, 1],
    )
    return {
        "images": tf.constant(
            rng.normal(size=(batch_size, FLAGS.output_size, FLAGS.output_size, 3)).astype(
                np.float32
            )
        ),
        "image_info": tf.constant(image_info),
        "source_ids": tf.range(batch_size, dtype=tf.int64),
    }


def _labels(params, rng, batch_size):
    """RetinaNet targets of `num_boxes` random boxes (16-60% of the side) per image."""
    size = FLAGS.output_size
    labeler = AnchorLabeler(
        dataloader_factory.anchors_from_params(params, [size, size]),
        params.retinanet_parser.match_threshold,
        params.retinanet_parser.unmatched_threshold,
    )
    per_image = []
    for _ in range(batch_size):
        hw = rng.uniform(0.16, 0.6, size=(FLAGS.num_boxes, 2)) * size
        top_left = rng.uniform(0.0, 1.0, size=(FLAGS.num_boxes, 2)) * (size - hw)
        boxes = np.concatenate([top_left, top_left + hw], axis=1).astype(np.float32)
        classes = rng.integers(1, params.architecture.num_classes, size=FLAGS.num_boxes)
        per_image.append(labeler.label_anchors(boxes, classes))
    cls_targets, box_targets, num_positives = zip(*per_image)
    stack = lambda dicts: {k: tf.stack([d[k] for d in dicts]) for k in dicts[0]}
    return {
        "cls_targets": stack(cls_targets),
        "box_targets": stack(box_targets),
        "num_positives": tf.stack(num_positives),
    }


def _pipeline_batch(params):
    """(features, labels): one batch of the model's own training input pipeline."""
    dataset = dataloader_factory.input_fn_from_params(params, TRAIN, deterministic=True)()
    return next(iter(dataset))


def _train_step(params, jit_compile, precision="float32"):
    """A compiled `step(features, labels) -> total loss` on a freshly built model."""
    keras.utils.set_random_seed(FLAGS.seed)
    model_fn = model_fn_factory.model_fn_from_params(params)
    model_fn.dtype_policy = keras.DTypePolicy(_POLICIES[precision])
    model = model_fn.build_model()
    train = params.train
    trained = list(model.trainable_variables)
    regularized = variable_selection.regularized(trained, train.regularization_variable_regex)
    optimizer = optimizers.build_optimizer(
        train.optimizer,
        learning_rates.learning_rate_schedule(train.learning_rate, train.total_steps),
    )
    optimizer.build(trained)  # Slots exist before tracing.

    def step(features, labels):
        # The executor's replica step (detection/executor/train_step.py) on one replica.
        with tf.GradientTape() as tape:
            model_loss = model_fn(model, features, labels, TRAIN)["total_loss"]
        grads = tape.gradient(model_loss, trained)
        loss = model_loss + variable_selection.l2_loss(regularized, train.l2_weight_decay)
        grads = variable_selection.add_l2_gradients(
            grads, trained, regularized, train.l2_weight_decay
        )
        optimizer.apply(grads, trained)
        return loss

    return tf.function(step, jit_compile=jit_compile)


def _timed(fn, args):
    """(wall seconds, CPU seconds of this process's threads, fetched result) of one call.

    On a shared machine the CPU seconds move less than the wall time: they count the work
    done, not the waiting for a core.
    """
    start, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    values = tf.nest.map_structure(lambda t: t.numpy(), result)  # waits for the step
    return time.perf_counter() - start, time.process_time() - cpu, values


def _run(variants, after_round=None):
    """Warm-up, then --num_rounds rounds of --num_steps alternating timed calls.

    `after_round(round_index)`, if given, runs after each round (the peer's steps).
    Returns {name: (first, [wall seconds], [CPU seconds], last value)}.
    """
    results = {}
    for name, fn, args in variants:
        first, _, value = _timed(fn, args)
        for _ in range(FLAGS.warmup_steps - 1):
            _, _, value = _timed(fn, args)
        results[name] = (first, [], [], value)
        print(f"  {name}: first call (trace + compile) {first:.1f} s", flush=True)
    for round_index in range(FLAGS.num_rounds):
        for _ in range(FLAGS.num_steps):
            for name, fn, args in variants:
                seconds, cpu, value = _timed(fn, args)
                first, walls, cpus, _ = results[name]
                results[name] = (first, walls + [seconds], cpus + [cpu], value)
        if after_round:
            after_round(round_index)
    return results


def _peer_train_step(precision):
    """The peer harness's train step in `precision`: {"all_s", "all_cpu_s", ...} per step."""
    command = [
        FLAGS.peer_python,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_phases.py"),
        "train",
        "--harness",
        FLAGS.peer_harness,
        "--",
        "--data",
        FLAGS.data,
        "--size",
        str(FLAGS.output_size),
        "--batch",
        str(FLAGS.batch_size),
        "--precision",
        precision,
        "--train_warmup",
        str(FLAGS.warmup_steps),
        "--train_steps",
        str(FLAGS.num_steps),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"the peer's train step ({' '.join(command)}) failed:\n{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


class _PeerRounds:
    """Runs and keeps the peer's train steps of each round, per precision."""

    def __init__(self, precisions):
        self.precisions = list(precisions)
        self.rounds = []  # [{precision: peer_phases result}]

    def __call__(self, round_index):
        results = {}
        for precision in self.precisions:
            results[precision] = _peer_train_step(precision)
            print(
                f"  round {round_index + 1}: peer train step, {precision}: median "
                f"{results[precision]['median_s']:.3f} s, "
                f"{results[precision]['median_cpu_s']:.3f} CPU s",
                flush=True,
            )
        self.rounds.append(results)

    def pooled(self, precision, key):
        return [x for results in self.rounds for x in results[precision][key]]


def _print_peer_comparison(train, peer):
    """Ours beside the peer per precision: over all rounds and round by round."""
    print()
    print(
        "| train step, tf.function | ours s | peer s | ours / peer | ours CPU s | peer CPU s "
        "| ours / peer, CPU | per-round ratios (wall; CPU) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for precision in peer.precisions:
        _, walls, cpus, _ = train[f"train, tf.function, {precision}"]
        wall, cpu = np.median(walls), np.median(cpus)
        peer_wall = np.median(peer.pooled(precision, "all_s"))
        peer_cpu = np.median(peer.pooled(precision, "all_cpu_s"))
        per_round = []
        for index, results in enumerate(peer.rounds):
            mine = slice(index * FLAGS.num_steps, (index + 1) * FLAGS.num_steps)
            per_round.append(
                f"{np.median(walls[mine]) / np.median(results[precision]['all_s']):.2f}; "
                f"{np.median(cpus[mine]) / np.median(results[precision]['all_cpu_s']):.2f}"
            )
        print(
            f"| {precision} | {wall:.3f} | {peer_wall:.3f} | {wall / peer_wall:.2f} | "
            f"{cpu:.3f} | {peer_cpu:.3f} | {cpu / peer_cpu:.2f} | {', '.join(per_round)} |"
        )


def _load():
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv):
    del argv
    if FLAGS.warmup_steps < 1 or FLAGS.num_steps < 1 or FLAGS.num_rounds < 1:
        raise app.UsageError("--warmup_steps, --num_steps and --num_rounds must be >= 1")
    if FLAGS.peer_python and FLAGS.model != "retinanet":
        raise app.UsageError("--peer_python: the peer's train step is timed for RetinaNet only")
    if FLAGS.peer_python and not os.path.exists(FLAGS.peer_harness):
        raise app.UsageError(f"--peer_harness={FLAGS.peer_harness} does not exist")
    load_before = _load()
    rng = np.random.default_rng(FLAGS.seed)
    params = _params()
    if FLAGS.model == "retinanet":
        features = _features(rng, FLAGS.batch_size)
        labels = _labels(params, rng, FLAGS.batch_size)
        positives = labels["num_positives"].numpy()
        inputs = f"{', '.join(f'{p:.0f}' for p in positives)} positive anchors per image"
    else:
        features, labels = _pipeline_batch(params)
        counts = np.sum(labels["gt_classes"].numpy() > 0, axis=1)
        inputs = f"{FLAGS.data}: {', '.join(str(c) for c in counts)} objects per image"
    size = f"{FLAGS.output_size}x{FLAGS.output_size}"
    override = f" + {FLAGS.params_override}" if FLAGS.params_override else ""
    native, why = bfloat16_support.native_bfloat16(tf.distribute.get_strategy())
    print(
        f"{FLAGS.model} R50-FPN (default {params.type} params{override}), CPU, {size}; "
        f"{len(os.sched_getaffinity(0))} CPUs (native bfloat16: {native}, {why}); train batch "
        f"{FLAGS.batch_size} ({inputs}), inference batch {FLAGS.infer_batch_size} "
        f"(score_threshold {FLAGS.infer_score_threshold}); {FLAGS.warmup_steps} warm-up + "
        f"{FLAGS.num_steps} timed calls per variant; load average before: {load_before}",
        flush=True,
    )
    train_variants = []
    for precision in FLAGS.precisions:
        if precision not in _POLICIES:
            raise app.UsageError(f"--precisions: {precision!r} is not one of {list(_POLICIES)}")
        train_variants.append(
            (
                f"train, tf.function, {precision}",
                _train_step(params, False, precision),
                (features, labels),
            )
        )
        if FLAGS.xla:
            train_variants.append(
                (
                    f"train, XLA, {precision}",
                    _train_step(params, True, precision),
                    (features, labels),
                )
            )
    peer = _PeerRounds(FLAGS.precisions) if FLAGS.peer_python else None
    train = _run(train_variants, peer)
    infer = _run(_inference_variants(rng)) if FLAGS.inference else {}
    results = {**train, **infer}

    print()
    print(f"| {size}, CPU | batch | median s | p90 s | median CPU s | first call s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (first, seconds, cpus, _) in results.items():
        batch = FLAGS.batch_size if name.startswith("train") else FLAGS.infer_batch_size
        print(
            f"| {name} | {batch} | {np.median(seconds):.3f} | "
            f"{np.percentile(seconds, 90):.3f} | {np.median(cpus):.3f} | {first:.1f} |"
        )
    print()
    for numerator, denominator in _ratio_pairs(results):
        top, bottom = np.array(results[numerator][1]), np.array(results[denominator][1])
        top_cpu, bottom_cpu = np.array(results[numerator][2]), np.array(results[denominator][2])
        print(
            f"{numerator} / {denominator} = {np.median(top) / np.median(bottom):.2f} (ratio of "
            f"median wall times), {np.median(top / bottom):.2f} (median of paired ratios), "
            f"{np.median(top_cpu) / np.median(bottom_cpu):.2f} (CPU seconds)"
        )
    if peer:
        _print_peer_comparison(train, peer)
    losses = {name: float(value) for name, (*_, value) in train.items()}
    print(f"last total loss: {losses}")
    if peer:
        print(f"peer's last loss: { {p: r['loss_last'] for p, r in peer.rounds[-1].items()} }")
    if infer:
        detections = {name: int(value["num_detections"][0]) for name, (*_, value) in infer.items()}
        print(f"detections per image: {detections}")
    print(f"load average (1, 5, 15 min) before: {load_before}; after: {_load()}")
    if FLAGS.json_out:
        _write_json(results, size, peer)
    if FLAGS.profile_steps:
        _profile(train_variants[0], FLAGS.profile_steps)


def _inference_variants(rng):
    """Float32 predict-mode calls (forward + decode + NMS), plain and with XLA."""
    infer_params = _params(FLAGS.infer_score_threshold)
    infer_features = _features(rng, FLAGS.infer_batch_size)
    keras.utils.set_random_seed(FLAGS.seed)
    infer_fn = model_fn_factory.model_fn_from_params(infer_params)
    infer_model = infer_fn.build_model()

    def predict(features):
        predictions = infer_fn(infer_model, features, None, PREDICT)["predictions"]
        return {
            k: predictions[k]
            for k in ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
        }

    variants = [("inference, tf.function", tf.function(predict), (infer_features,))]
    if FLAGS.xla:
        variants.append(
            ("inference, XLA", tf.function(predict, jit_compile=True), (infer_features,))
        )
    return variants


def _ratio_pairs(results):
    """(numerator, denominator) names: XLA / plain and bfloat16 / float32, where both ran."""
    pairs = []
    for name in results:
        for slower, faster in ((", XLA", ", tf.function"), (", bfloat16", ", float32")):
            if slower in name and name.replace(slower, faster) in results:
                pairs.append((name, name.replace(slower, faster)))
    return pairs


def _write_json(results, size, peer):
    """The medians as {figure, unit, ours, peer} rows (bench/report.py collects them)."""
    rows = []
    for name, (_, seconds, cpus, _) in results.items():
        batch = FLAGS.batch_size if name.startswith("train") else FLAGS.infer_batch_size
        figure = f"{FLAGS.model} {name}, {size}, batch {batch}"
        precision = name.rpartition(", ")[2]
        has_peer = peer and name.startswith("train, tf.function") and precision in peer.precisions
        peer_wall = float(np.median(peer.pooled(precision, "all_s"))) if has_peer else None
        peer_cpu = float(np.median(peer.pooled(precision, "all_cpu_s"))) if has_peer else None
        rows.append(
            {"figure": figure, "unit": "s", "ours": float(np.median(seconds)), "peer": peer_wall}
        )
        rows.append(
            {"figure": figure, "unit": "CPU s", "ours": float(np.median(cpus)), "peer": peer_cpu}
        )
    with open(FLAGS.json_out, "w") as f:
        json.dump(rows, f, indent=1)


def _profile(variant, num_steps):
    """Profiles `num_steps` calls of a (warmed-up) variant and prints where the time goes."""
    name, fn, args = variant
    log_dir = FLAGS.profile_dir or tempfile.mkdtemp(prefix="train_step_profile_")
    tf.profiler.experimental.start(log_dir)
    for _ in range(num_steps):
        _timed(fn, args)
    tf.profiler.experimental.stop()
    print(f"\nprofile of {num_steps} calls of '{name}' ({log_dir}):\n")
    print(op_profile.format_summary(op_profile.summarize(log_dir), num_steps))


if __name__ == "__main__":
    app.run(main)
