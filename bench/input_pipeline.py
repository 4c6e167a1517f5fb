"""Images per second of the RetinaNet training input pipeline with each augmentation policy.

Reads the synthetic shapes dataset (generated under --data_dir when missing) through
`factory.input_fn_from_params` (decode, policy, flip, jitter, resize to --output_size, anchor
targets, batching) with the retinanet defaults. Settings:

  plain        no augmentation at all (scale 1.0, no flip)
  none         scale jitter 0.8-1.2 and random flip, `aug_policy: ''` (the baseline)
  v0 ... test  the same plus `aug_policy: <name>`
  randaugment  the same plus `aug_policy: randaugment` (N=2, M=10)

Each setting runs alone (a pipeline left open would keep filling its prefetch buffers in the
background and steal CPU from the one being timed, then look fast on its turn): build, read
--warmup_batches batches (graph instantiation, shuffle buffer, tf.data autotuning), time
--num_runs runs of --num_batches batches back to back, close. --num_rounds rounds over all
settings spread load changes on a shared machine across them. Reported: the median
images/second over all runs, its ratio to `none`, and the median process CPU milliseconds
per image (the figure other load on a shared machine distorts least). `bench/augment_policies.py` times the policies alone,
without the rest of the pipeline.

Usage (from the repository root):
  .venv/bin/python bench/input_pipeline.py [--data_dir=data/shapes --output_size=640]
"""

import gc
import statistics
import time

from absl import app, flags

from detection.configs import factory as config_factory
from detection.dataloader import factory
from detection.dataloader.augment import factory as augment_factory
from detection.tools import make_shapes_dataset

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "data/shapes", "Shapes dataset directory (generated if missing).")
flags.DEFINE_integer("batch_size", 8, "Images per batch.")
flags.DEFINE_integer("output_size", 640, "Network input side in pixels.")
flags.DEFINE_integer("warmup_batches", 10, "Batches read before timing.")
flags.DEFINE_integer("num_batches", 30, "Batches per timed run.")
flags.DEFINE_integer("num_runs", 3, "Timed runs per round; the median is reported.")
flags.DEFINE_integer("num_rounds", 2, "Rounds over all settings (each builds the pipelines).")
flags.DEFINE_list(
    "settings",
    ["plain", "none", *augment_factory.DETECTION_POLICIES],
    "Settings to time (module docstring); ratios are to `none`.",
)


def _parser_overrides(setting):
    if setting == "plain":
        return {"aug_scale_min": 1.0, "aug_scale_max": 1.0, "aug_rand_hflip": False}
    jitter = {"aug_scale_min": 0.8, "aug_scale_max": 1.2, "aug_rand_hflip": True}
    return dict(jitter, aug_policy="" if setting == "none" else setting)


def _params(file_pattern, setting):
    params = config_factory.config_generator("retinanet")
    params.override(
        {
            "architecture": {"num_classes": 4},
            "train": {"train_file_pattern": file_pattern, "train_batch_size": FLAGS.batch_size},
            "retinanet_parser": dict(
                _parser_overrides(setting), output_size=[FLAGS.output_size, FLAGS.output_size]
            ),
        }
    )
    return params


def _rate(iterator):
    """(images per second, process CPU milliseconds per image) of one run."""
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.num_batches):
        next(iterator)
    num_images = FLAGS.num_batches * FLAGS.batch_size
    cpu_ms = (time.process_time() - cpu_start) * 1000 / num_images
    return num_images / (time.perf_counter() - start), cpu_ms


def main(argv):
    del argv
    # The generator's defaults, so an existing data/shapes (e.g. from `make demo`) is reused.
    paths = make_shapes_dataset.ensure_shapes_dataset(FLAGS.data_dir)
    settings = FLAGS.settings
    print(
        f"RetinaNet train input pipeline: {paths['train_file_pattern']}, "
        f"{FLAGS.output_size}x{FLAGS.output_size}, batch {FLAGS.batch_size}, "
        f"{FLAGS.num_runs} runs x {FLAGS.num_batches} batches after "
        f"{FLAGS.warmup_batches} warm-up"
    )
    rates = {setting: [] for setting in settings}
    cpu_ms = {setting: [] for setting in settings}
    for round_index in range(FLAGS.num_rounds):
        for setting in settings:
            start = time.perf_counter()
            params = _params(paths["train_file_pattern"], setting)
            dataset = factory.input_fn_from_params(params, "train")()
            iterator = iter(dataset)
            for _ in range(FLAGS.warmup_batches):
                next(iterator)
            print(
                f"  round {round_index + 1}, {setting}: first batches after "
                f"{time.perf_counter() - start:.1f} s"
            )
            for _ in range(FLAGS.num_runs):
                rate, cpu = _rate(iterator)
                rates[setting].append(rate)
                cpu_ms[setting].append(cpu)
            del iterator, dataset
            gc.collect()
    has_baseline = "none" in rates
    for setting in settings:
        median = statistics.median(rates[setting])
        cpu = statistics.median(cpu_ms[setting])
        ratios = ""
        if has_baseline:
            ratios = (
                f"  {median / statistics.median(rates['none']):5.2f} x none"
                f"  (CPU {cpu / statistics.median(cpu_ms['none']):5.2f} x none)"
            )
        runs = ", ".join(f"{r:.0f}" for r in rates[setting])
        print(
            f"  {setting:12s} {median:8.1f} images/s {cpu:6.2f} CPU ms/image{ratios}"
            f"   (runs: {runs})"
        )


if __name__ == "__main__":
    app.run(main)
