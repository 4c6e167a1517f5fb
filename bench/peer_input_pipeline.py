"""The Model Garden peer harness's input-pipeline measure (a) alone, wall and CPU seconds.

Run with the peer's virtualenv (it imports TF Model Garden, never `detection`):

    ~/.venvs/model-garden/bin/python bench/peer_input_pipeline.py \
        --harness ../shared/peers/modelgarden_bench.py -- \
        --data 'data/shapes/tfrecords/train-*' --size 384 --batch 2

Everything after `--` goes to the harness's own argument parser (its pipeline flags:
--pipeline_warmup, --pipeline_batches, --pipeline_repeats). The harness file is loaded
unchanged and only its pipeline phase runs: `make_config` + `task.build_inputs` +
`bench_pipeline` for RetinaNet (decode, parser with the registered hflip and scale jitter
0.8-1.2, anchor targets, batching). Its train and inference phases, minutes of tracing, are
skipped. The phase runs twice on a fresh pipeline each: once as registered (wall seconds),
then with the harness's clock reading the process's CPU seconds (all threads), as
`bench/peer_cpu_seconds.py` does for the whole harness. Prints one JSON line:

    {"images_per_s": <median chunk rate, wall>, "cpu_ms_per_image": <1000 / median chunk rate,
     CPU clock>, "chunk_rates": [...], "cpu_chunk_rates": [...]}

`bench/input_pipeline.py --peer_python ...` runs this between its own settings.
"""

import argparse
import gc
import importlib.util
import json
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


def main():
    own = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    performance.set_mixed_precision_policy(tf.float32)

    wall_rate, wall_chunks = _pipeline_rates(harness, args)
    wall_clock = time.perf_counter
    time.perf_counter = time.process_time  # The harness's only clock, now CPU seconds.
    try:
        cpu_rate, cpu_chunks = _pipeline_rates(harness, args)
    finally:
        time.perf_counter = wall_clock
    print(
        json.dumps(
            {
                "images_per_s": wall_rate,
                "cpu_ms_per_image": 1000.0 / cpu_rate,
                "chunk_rates": wall_chunks,
                "cpu_chunk_rates": cpu_chunks,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
