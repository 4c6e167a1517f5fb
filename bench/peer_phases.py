"""One phase of the Model Garden peer harness, run alone, in wall and CPU seconds.

Run with the peer's virtualenv (it imports TF Model Garden, never `detection`):

    ~/.venvs/model-garden/bin/python bench/peer_phases.py pipeline \
        --harness ../shared/peers/modelgarden_bench.py -- \
        --data 'data/shapes/tfrecords/train-*' --size 384 --batch 2
    ~/.venvs/model-garden/bin/python bench/peer_phases.py serve \
        --harness ../shared/peers/modelgarden_bench.py -- \
        --data 'data/shapes/tfrecords/train-*' --size 384
    ~/.venvs/model-garden/bin/python bench/peer_phases.py train \
        --harness ../shared/peers/modelgarden_bench.py -- \
        --data 'data/shapes/tfrecords/train-*' --size 384 --batch 2 --precision bfloat16

Everything after `--` goes to the harness's own argument parser. The harness file is loaded
unchanged and only the named phase of its RetinaNet run happens (its other phases take
minutes of tracing):

  pipeline  measure (a): `make_config` + `task.build_inputs` + its `bench_pipeline` (decode,
            parser with the registered hflip and scale jitter 0.8-1.2, anchor targets,
            batching; flags --pipeline_warmup, --pipeline_batches, --pipeline_repeats). It runs
            twice on a fresh pipeline each: as registered (wall seconds), then with the
            harness's clock reading the process's CPU seconds (all threads), as
            `bench/peer_cpu_seconds.py` does for the whole harness.
  serve     measure (c): its `bench_infer`, `DetectionModule.serve` at batch 1 on the first
            decoded JPEGs of --data (normalize, resize/pad to SxS, forward, detection generator),
            with NMS (as registered, 'v2') and without (apply_nms=False); flags --infer_warmup,
            --infer_steps, --infer_no_nms_steps. Its `timed_loop` is wrapped so that each timed
            call also records the CPU seconds of the process.
  train     measure (b): its `bench_train`, `tf.function(task.train_step)` (no XLA) of a freshly
            built model on the first batches of its own pipeline, in --precision (flags
            --train_warmup, --train_steps); each timed call also records the CPU seconds of the
            process. `bench/train_step.py --peer_python` runs it between its own rounds.

Prints one JSON line: pipeline `{"images_per_s", "cpu_ms_per_image", "chunk_rates",
"cpu_chunk_rates"}` (rates: medians of the chunks); serve `{"with_nms": {...}, "without_nms":
{...}}`, each `{"median_s", "median_cpu_s", "all_s", "all_cpu_s"}` per image; train
`{"median_s", "median_cpu_s", "all_s", "all_cpu_s", "loss_last", "precision"}` per step.

`bench/input_pipeline.py` and `bench/inference.py` run this with --peer_python.
"""

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import time


def _load_harness(path):
    spec = importlib.util.spec_from_file_location("modelgarden_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pipeline_rates(harness, args):
    """(median chunk rate, chunk rates) of one fresh pipeline, with the harness's clock."""
    from official.core import task_factory

    cfg = harness.make_config("retinanet", args.size, args.batch, args.data, None, args.sync_bn)
    task = task_factory.get_task(cfg.task)
    result, iterator = harness.bench_pipeline(task, cfg, args)
    del iterator  # Stops its prefetching before the next measurement.
    gc.collect()
    return result["images_per_s_median"], result["chunk_rates"]


def _pipeline(harness, args):
    wall_rate, wall_chunks = _pipeline_rates(harness, args)
    wall_clock = time.perf_counter
    time.perf_counter = time.process_time  # The harness's only clock, now CPU seconds.
    try:
        cpu_rate, cpu_chunks = _pipeline_rates(harness, args)
    finally:
        time.perf_counter = wall_clock
    return {
        "images_per_s": wall_rate,
        "cpu_ms_per_image": 1000.0 / cpu_rate,
        "chunk_rates": wall_chunks,
        "cpu_chunk_rates": cpu_chunks,
    }


def _raw_images(args, count):
    """The first `count` decoded JPEGs of --data, [1, h, w, 3] uint8, as the harness reads."""
    import tensorflow as tf

    files = tf.io.gfile.glob(args.data)
    images = []
    for record in tf.data.TFRecordDataset(files).take(count):
        example = tf.io.parse_single_example(
            record, {"image/encoded": tf.io.FixedLenFeature((), tf.string)}
        )
        images.append(tf.io.decode_jpeg(example["image/encoded"], channels=3)[None])
    return images


def _record_cpu_seconds(harness):
    """Wraps the harness's `timed_loop` so that each timed call's CPU seconds are appended to
    the returned list (the calls before `warmup` are not timed by the harness either)."""
    cpu_seconds = []
    original_loop = harness.timed_loop

    def timed_loop_with_cpu(fn, warmup, steps, max_s):
        def timed(i):
            start = time.process_time()
            fn(i)
            if i >= warmup:
                cpu_seconds.append(time.process_time() - start)

        return original_loop(timed, warmup, steps, max_s)

    harness.timed_loop = timed_loop_with_cpu
    return cpu_seconds


def _train(harness, args):
    from official.core import task_factory

    cpu_seconds = _record_cpu_seconds(harness)
    cfg = harness.make_config("retinanet", args.size, args.batch, args.data, None, args.sync_bn)
    task = task_factory.get_task(cfg.task)
    iterator = iter(task.build_inputs(cfg.task.train_data))
    batches = [next(iterator) for _ in range(min(args.train_warmup + args.train_steps, 16))]
    del iterator  # Stops its prefetching before the timing.
    gc.collect()
    model = task.build_model()
    timed = harness.bench_train(
        task, model, cfg, batches, args, False, args.train_warmup, args.train_steps
    )
    return {
        "median_s": timed["median"],
        "median_cpu_s": statistics.median(cpu_seconds),
        "all_s": timed["all"],
        "all_cpu_s": [round(x, 5) for x in cpu_seconds],
        "loss_last": timed["loss_last"],
        "precision": harness.PRECISION[0],
    }


def _serve(harness, args):
    cpu_seconds = _record_cpu_seconds(harness)
    raw = _raw_images(args, max(args.infer_steps, args.infer_no_nms_steps, 4))
    result = {}
    for key, apply_nms, steps in (
        ("with_nms", True, args.infer_steps),
        ("without_nms", False, args.infer_no_nms_steps),
    ):
        cpu_seconds.clear()
        timed = harness.bench_infer("retinanet", args, args.data, None, raw, apply_nms, steps)
        result[key] = {
            "median_s": timed["median"],
            "median_cpu_s": statistics.median(cpu_seconds),
            "all_s": timed["all"],
            "all_cpu_s": [round(x, 5) for x in cpu_seconds],
            "nms_version": timed["nms_version"],
        }
        harness.tf_keras_clear()
    return result


def main():
    own = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    own.add_argument("phase", choices=["pipeline", "serve", "train"])
    own.add_argument("--harness", required=True, help="path of modelgarden_bench.py")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    flags = own.parse_args(argv[:split])
    harness = _load_harness(flags.harness)
    sys.argv = [flags.harness] + argv[split + 1 :]
    args = harness.parse_args()
    if not args.data:
        raise SystemExit("--data (the TFRecords to read) is required after --")

    import tensorflow as tf
    from official.modeling import performance
    from official.vision import registry_imports  # noqa: F401  (registers the experiments)

    tf.random.set_seed(args.seed)
    # --precision is the harness's own flag; only its train step uses it (as in its main()).
    precision = args.precision if flags.phase == "train" else "float32"
    harness.PRECISION[0] = precision
    performance.set_mixed_precision_policy(tf.bfloat16 if precision == "bfloat16" else tf.float32)
    phases = {"pipeline": _pipeline, "serve": _serve, "train": _train}
    result = phases[flags.phase](harness, args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
