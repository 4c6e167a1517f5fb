"""Images per second of the RetinaNet training input pipeline, with and without augmentation.

Reads the synthetic shapes dataset (generated under --data_dir when missing) through
`factory.input_fn_from_params` with the retinanet defaults at --output_size, once with scale
jitter (aug_scale 0.8-1.2) and random flip, once without (scale 1.0, no flip). For each
setting: --warmup_batches batches (shuffle buffer fill, tf.data autotuning), then --num_runs
timings of --num_batches batches, alternating between the settings; the median images/second
is reported, and the augmented / plain ratio.

Usage (from the repository root):
  .venv/bin/python bench/input_pipeline.py [--data_dir=data/shapes --batch_size=8]
"""

import statistics
import time

from absl import app, flags

from detection.configs import factory as config_factory
from detection.dataloader import factory
from detection.tools import make_shapes_dataset

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "data/shapes", "Shapes dataset directory (generated if missing).")
flags.DEFINE_integer("batch_size", 8, "Images per batch.")
flags.DEFINE_integer("output_size", 640, "Network input side in pixels.")
flags.DEFINE_integer("warmup_batches", 10, "Batches read before timing.")
flags.DEFINE_integer("num_batches", 30, "Batches per timed run.")
flags.DEFINE_integer("num_runs", 5, "Timed runs; the median is reported.")

SETTINGS = (
    (
        "augmented (scale 0.8-1.2, flip)",
        {"aug_scale_min": 0.8, "aug_scale_max": 1.2, "aug_rand_hflip": True},
    ),
    (
        "plain (scale 1.0, no flip)",
        {"aug_scale_min": 1.0, "aug_scale_max": 1.0, "aug_rand_hflip": False},
    ),
)


def _params(file_pattern, parser_overrides):
    params = config_factory.config_generator("retinanet")
    params.override(
        {
            "architecture": {"num_classes": 4},
            "train": {"train_file_pattern": file_pattern, "train_batch_size": FLAGS.batch_size},
            "retinanet_parser": dict(
                parser_overrides, output_size=[FLAGS.output_size, FLAGS.output_size]
            ),
        }
    )
    return params


def _time_batches(iterator):
    start = time.perf_counter()
    for _ in range(FLAGS.num_batches):
        next(iterator)
    return FLAGS.num_batches * FLAGS.batch_size / (time.perf_counter() - start)


def main(argv):
    del argv
    # The generator's defaults, so an existing data/shapes (e.g. from `make demo`) is reused.
    paths = make_shapes_dataset.ensure_shapes_dataset(FLAGS.data_dir)
    print(
        f"RetinaNet train input pipeline: {paths['train_file_pattern']}, "
        f"{FLAGS.output_size}x{FLAGS.output_size}, batch {FLAGS.batch_size}, "
        f"{FLAGS.num_runs} runs x {FLAGS.num_batches} batches after "
        f"{FLAGS.warmup_batches} warm-up"
    )
    iterators = [
        iter(
            factory.input_fn_from_params(_params(paths["train_file_pattern"], overrides), "train")()
        )
        for _, overrides in SETTINGS
    ]
    for iterator in iterators:
        for _ in range(FLAGS.warmup_batches):
            next(iterator)
    # Runs of the two settings alternate, so that load changes on a shared machine hit both.
    rates = [[] for _ in SETTINGS]
    for _ in range(FLAGS.num_runs):
        for iterator, setting_rates in zip(iterators, rates):
            setting_rates.append(_time_batches(iterator))
    medians = [statistics.median(r) for r in rates]
    for (name, _), median, setting_rates in zip(SETTINGS, medians, rates):
        print(
            f"  {name:34s} {median:8.1f} images/s (runs: "
            f"{', '.join(f'{r:.1f}' for r in setting_rates)})"
        )
    paired = statistics.median(a / b for a, b in zip(*rates))
    print(
        f"  augmented / plain: {medians[0] / medians[1]:.2f} (ratio of medians), "
        f"{paired:.2f} (median of per-run ratios)"
    )


if __name__ == "__main__":
    app.run(main)
