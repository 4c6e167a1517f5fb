"""Images per second of the RetinaNet training input pipeline with each augmentation policy.

Reads the synthetic shapes dataset (generated under --data_dir when missing) through
`factory.input_fn_from_params` (decode, policy, flip, jitter, resize to --output_size, anchor
targets, batching) with the retinanet defaults. Settings:

  plain        no augmentation at all (scale 1.0, no flip)
  none         scale jitter 0.8-1.2 and random flip, `aug_policy: ''` (the baseline)
  v0 ... test  the same plus `aug_policy: <name>`
  randaugment  the same plus `aug_policy: randaugment` (N=2, M=10)

  peer         TF Model Garden's RetinaNet pipeline on the same records (--peer_python): its
               registered parser (hflip, scale jitter 0.8-1.2, anchor targets) at the same size
               and batch, timed by the peer harness itself (`bench/peer_phases.py pipeline`)

Each setting runs alone (a pipeline left open would keep filling its prefetch buffers in the
background and steal CPU from the one being timed, then look fast on its turn): build, read
--warmup_batches batches (graph instantiation, shuffle buffer, tf.data autotuning), time
--num_runs runs of --num_batches batches back to back, close. --num_rounds rounds over all
settings (the peer, in its own process, takes its turn before them) spread load changes on a
shared machine across them. Reported: the median images/second over all runs, its ratio to
`none`, and the median process CPU milliseconds per image (the figure other load on a shared
machine distorts least); with the peer, `none` / peer for both. The load average is printed
before and after. `bench/augment_policies.py` times the policies alone, without the rest of
the pipeline.

Usage (from the repository root):
  .venv/bin/python bench/input_pipeline.py [--data_dir=data/shapes --output_size=640]
  .venv/bin/python bench/input_pipeline.py --output_size=384 --batch_size=2 --settings=none \
      --num_batches=100 --num_rounds=3 --peer_python=$HOME/.venvs/model-garden/bin/python \
      --peer_harness=../shared/peers/modelgarden_bench.py --json_out=pipeline.json
"""

import gc
import json
import os
import statistics
import subprocess
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
flags.DEFINE_string(
    "peer_python",
    "",
    "Python of the Model Garden virtualenv; with --peer_harness, the peer's pipeline is timed "
    "in each round too.",
)
flags.DEFINE_string("peer_harness", "", "Path of the peer harness, modelgarden_bench.py.")
flags.DEFINE_string(
    "json_out", "", "Write the figures here as JSON rows (figure, unit, ours, peer)."
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


def _peer_rates(file_pattern):
    """(images/s, CPU ms per image) of the peer's pipeline, timed by its harness in its venv."""
    here = os.path.dirname(os.path.abspath(__file__))
    command = [
        FLAGS.peer_python,
        os.path.join(here, "peer_phases.py"),
        "pipeline",
        "--harness",
        FLAGS.peer_harness,
        "--",
        "--data",
        file_pattern,
        "--size",
        str(FLAGS.output_size),
        "--batch",
        str(FLAGS.batch_size),
        "--pipeline_warmup",
        str(FLAGS.warmup_batches),
        "--pipeline_batches",
        str(FLAGS.num_runs * FLAGS.num_batches),
        "--pipeline_repeats",
        str(FLAGS.num_runs),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the peer pipeline failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["images_per_s"], result["cpu_ms_per_image"]


def _load():
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _json_rows(rates, cpu_ms):
    """Rows for `make bench` (bench/report.py): images/s and CPU ms per image of each setting.

    The `none` setting (the peer's augmentation) is named as report.py names the peer's
    pipeline figure, `retinanet input pipeline, SxS`, so the two pair up; its `peer` is the
    peer's pipeline timed here, when it was.
    """
    size = f"{FLAGS.output_size}x{FLAGS.output_size}"
    has_peer = "peer" in rates
    rows = []
    for setting in rates:
        if setting == "peer":
            continue
        peer = has_peer and setting == "none"
        name = "" if setting == "none" else f", {setting}"
        for unit, values in (("images/s", rates), ("CPU ms/image", cpu_ms)):
            rows.append(
                {
                    "figure": f"retinanet input pipeline{name}, {size}",
                    "unit": unit,
                    "ours": statistics.median(values[setting]),
                    "peer": statistics.median(values["peer"]) if peer else None,
                }
            )
    return rows


def main(argv):
    del argv
    # The generator's defaults, so an existing data/shapes (e.g. from `make demo`) is reused.
    paths = make_shapes_dataset.ensure_shapes_dataset(FLAGS.data_dir)
    settings = list(FLAGS.settings)
    with_peer = bool(FLAGS.peer_python and FLAGS.peer_harness)
    if bool(FLAGS.peer_python) != bool(FLAGS.peer_harness):
        raise app.UsageError("--peer_python and --peer_harness go together")
    load_before = _load()
    print(
        f"RetinaNet train input pipeline: {paths['train_file_pattern']}, "
        f"{FLAGS.output_size}x{FLAGS.output_size}, batch {FLAGS.batch_size}, "
        f"{FLAGS.num_runs} runs x {FLAGS.num_batches} batches after "
        f"{FLAGS.warmup_batches} warm-up; load average before: {load_before}"
    )
    rates = {setting: [] for setting in settings + (["peer"] if with_peer else [])}
    cpu_ms = {setting: [] for setting in rates}
    for round_index in range(FLAGS.num_rounds):
        if with_peer:
            start = time.perf_counter()
            rate, cpu = _peer_rates(paths["train_file_pattern"])
            rates["peer"].append(rate)
            cpu_ms["peer"].append(cpu)
            print(
                f"  round {round_index + 1}, peer: {rate:.1f} images/s, {cpu:.2f} CPU ms/image "
                f"({time.perf_counter() - start:.0f} s with its start-up)"
            )
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
    for setting, setting_rates in rates.items():
        median = statistics.median(setting_rates)
        cpu = statistics.median(cpu_ms[setting])
        ratios = ""
        if has_baseline:
            ratios = (
                f"  {median / statistics.median(rates['none']):5.2f} x none"
                f"  (CPU {cpu / statistics.median(cpu_ms['none']):5.2f} x none)"
            )
        runs = ", ".join(f"{r:.0f}" for r in setting_rates)
        print(
            f"  {setting:12s} {median:8.1f} images/s {cpu:6.2f} CPU ms/image{ratios}"
            f"   (runs: {runs})"
        )
    if with_peer and has_baseline:
        ours, peer = statistics.median(rates["none"]), statistics.median(rates["peer"])
        ours_cpu, peer_cpu = statistics.median(cpu_ms["none"]), statistics.median(cpu_ms["peer"])
        runs = FLAGS.num_runs
        paired = [
            statistics.median(rates["none"][i * runs : (i + 1) * runs]) / peer_rate
            for i, peer_rate in enumerate(rates["peer"])
        ]
        print(
            f"ours (none) / peer: {ours / peer:.2f} x the images/s (median of the round pairs "
            f"{statistics.median(paired):.2f}), {peer_cpu / ours_cpu:.2f} x fewer CPU ms/image"
        )
    print(f"load average (1, 5, 15 min) before: {load_before}; after: {_load()}")
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(_json_rows(rates, cpu_ms), f, indent=1)


if __name__ == "__main__":
    app.run(main)
