"""`make bench`: every benchmark of bench/, and TF Model Garden's figures beside ours.

Runs each of our bench scripts with `--json_out` (rows `{figure, unit, ours, peer}`), then,
when the peer's virtualenv exists (--peer_python, default ~/.venvs/model-garden/bin/python;
set-up in ../shared/peers/README.md), the peer harness on the same TFRecords at the same size
and batch, in float32 and in bfloat16, twice: once with its own (wall) clock and once through
bench/peer_cpu_seconds.py (CPU seconds). Ours and the peer's runs alternate (--rounds), so a
load change on a shared machine hits both. Prints one table: figure, unit, ours, peer,
ours / peer, and writes it to --out as JSON.

Usage (from the repository root, after `make install`):
  .venv/bin/python bench/report.py [--rounds=1 --output_size=384 --batch_size=2]
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("output_size", 384, "Network input side of the train step and pipeline.")
flags.DEFINE_integer("batch_size", 2, "Train step batch.")
flags.DEFINE_integer("rounds", 1, "Alternating rounds of ours and the peer (medians reported).")
flags.DEFINE_string("data", "data/shapes/tfrecords/train-*", "TFRecords both sides read.")
flags.DEFINE_string(
    "peer_python",
    os.path.expanduser("~/.venvs/model-garden/bin/python"),
    "The Model Garden virtualenv's python (skipped when absent).",
)
flags.DEFINE_string(
    "peer_harness",
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers", "modelgarden_bench.py"),
    "The peer harness.",
)
flags.DEFINE_string("out", "", "Also write the table here (JSON).")

_HERE = os.path.dirname(os.path.abspath(__file__))


def _our_commands():
    """(name, argv without --json_out) of each of our benchmarks."""
    size, batch = str(FLAGS.output_size), str(FLAGS.batch_size)
    return [
        (
            "train_step",
            [
                "train_step.py",
                "--noxla",
                "--noinference",
                "--precisions=float32,bfloat16",
                f"--output_size={size}",
                f"--batch_size={batch}",
            ],
        ),
    ]


def _train_figure(precision, clock):
    size = FLAGS.output_size
    return (
        f"retinanet train, tf.function, {precision}, {size}x{size}, batch {FLAGS.batch_size}",
        clock,
    )


def _peer_rows(report, precision, clock):
    """Rows of the peer's JSON report: its train step (s or CPU s) and, in float32, the rest."""
    retinanet = report["models"]["retinanet"]
    rows = {}
    if "median" in retinanet.get("train", {}):
        rows[_train_figure(precision, clock)] = retinanet["train"]["median"]
    if precision == "float32" and clock == "s":
        pipeline = retinanet.get("pipeline", {})
        if "images_per_s_median" in pipeline:
            rows[
                (f"retinanet input pipeline, {FLAGS.output_size}x{FLAGS.output_size}", "images/s")
            ] = pipeline["images_per_s_median"]
        for key, figure in (("infer", "with NMS"), ("infer_no_nms", "without NMS")):
            if "median" in retinanet.get(key, {}):
                rows[(f"retinanet inference {figure}, batch 1", "s/image")] = retinanet[key][
                    "median"
                ]
    return rows


def _run_ours(name, argv, workdir):
    path = os.path.join(workdir, f"{name}.json")
    print(f"ours: {' '.join(argv)}", flush=True)
    subprocess.run(
        [sys.executable, os.path.join(_HERE, argv[0]), *argv[1:], f"--json_out={path}"], check=True
    )
    with open(path) as f:
        return {(row["figure"], row["unit"]): row["ours"] for row in json.load(f)}


def _run_peer(precision, clock, workdir):
    path = os.path.join(workdir, f"peer_{precision}_{clock.replace(' ', '_')}.json")
    argv = [
        FLAGS.peer_harness,
        "--data",
        FLAGS.data,
        "--size",
        str(FLAGS.output_size),
        "--batch",
        str(FLAGS.batch_size),
        "--models",
        "retinanet",
        "--xla",
        "0",
        "--precision",
        precision,
        "--out",
        path,
    ]
    if precision != "float32" or clock != "s":
        # Only the train step is wanted from these runs.
        argv += ["--infer_steps", "1", "--infer_warmup", "1", "--infer_no_nms", "0"]
    if clock == "CPU s":
        argv = [os.path.join(_HERE, "peer_cpu_seconds.py"), *argv]
    print(f"peer ({precision}, {clock}): {' '.join(argv)}", flush=True)
    subprocess.run([FLAGS.peer_python, *argv], check=True)
    with open(path) as f:
        return _peer_rows(json.load(f), precision, clock)


def _collect(runs):
    """{(figure, unit): median over rounds} of a list of {(figure, unit): value}."""
    values = {}
    for run in runs:
        for key, value in run.items():
            values.setdefault(key, []).append(value)
    return {key: statistics.median(v) for key, v in values.items()}


def _format(value):
    return "-" if value is None else f"{value:.3f}"


def main(argv):
    del argv
    has_peer = os.path.exists(FLAGS.peer_python) and os.path.exists(FLAGS.peer_harness)
    ours_runs, peer_runs = [], []
    with tempfile.TemporaryDirectory(prefix="bench_") as workdir:
        for _ in range(FLAGS.rounds):
            for name, command in _our_commands():
                ours_runs.append(_run_ours(name, command, workdir))
            if has_peer:
                for precision in ("float32", "bfloat16"):
                    for clock in ("s", "CPU s"):
                        peer_runs.append(_run_peer(precision, clock, workdir))
    ours, peer = _collect(ours_runs), _collect(peer_runs)
    rows = []
    for key in list(ours) + [k for k in peer if k not in ours]:
        mine, theirs = ours.get(key), peer.get(key)
        ratio = mine / theirs if mine is not None and theirs else None
        rows.append(
            {"figure": key[0], "unit": key[1], "ours": mine, "peer": theirs, "ratio": ratio}
        )
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    peer_note = "" if has_peer else f" (no peer: {FLAGS.peer_python} not found)"
    print(f"\n{FLAGS.rounds} round(s), load average after: {load}{peer_note}\n")
    print("| figure | unit | ours | TF Model Garden | ours / peer |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['figure']} | {row['unit']} | {_format(row['ours'])} | "
            f"{_format(row['peer'])} | {_format(row['ratio'])} |"
        )
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
