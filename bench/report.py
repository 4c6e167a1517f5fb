"""`make bench`: every benchmark of bench/, and TF Model Garden's figures beside ours.

Runs each of our bench scripts with `--json_out` (rows `{figure, unit, ours, peer}`). When the
peer's virtualenv exists (--peer_python, default ~/.venvs/model-garden/bin/python; set-up in
../shared/peers/README.md) each of them also runs the peer's own measure of the same thing on
the same TFRecords at the same size and batch, alternately with ours, on the wall and the CPU
clock (bench/peer_phases.py): the train step in float32 and bfloat16 between two rounds of
ours, the input pipeline, the serving latency. With --rounds the whole set repeats (medians
reported). Prints one table: figure, unit, ours, peer, ours / peer, and writes it to --out as
JSON.

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
flags.DEFINE_string(
    "demo_dir", "runs/shapes_retinanet", "The trained shapes RetinaNet (make demo) for inference."
)

_HERE = os.path.dirname(os.path.abspath(__file__))


def _our_commands(has_peer):
    """(name, argv without --json_out) of each of our benchmarks.

    The train step, input pipeline and serving benches alternate with the peer's own measures
    themselves (their rows carry the peer's figure); the inference bench needs a trained shapes
    RetinaNet (`make demo`) in --demo_dir and is left out without one.
    """
    size, batch = str(FLAGS.output_size), str(FLAGS.batch_size)
    peer = [f"--peer_python={FLAGS.peer_python}", f"--peer_harness={FLAGS.peer_harness}"]
    commands = [
        (
            "train_step",
            [
                "train_step.py",
                "--noxla",
                "--noinference",
                "--precisions=float32,bfloat16",
                f"--output_size={size}",
                f"--batch_size={batch}",
                f"--data={FLAGS.data}",
                *(peer + ["--num_rounds=2"] if has_peer else []),
            ],
        ),
        (
            "input_pipeline",
            [
                "input_pipeline.py",
                f"--output_size={size}",
                f"--batch_size={batch}",
                "--settings=none",
                "--num_batches=100",
                "--num_rounds=2",
                *(peer if has_peer else []),
            ],
        ),
        ("coco_eval", ["coco_eval.py", "--num_rounds=1"]),
    ]
    if os.path.isdir(FLAGS.demo_dir):
        commands.append(
            (
                "inference",
                [
                    "inference.py",
                    f"--model_dir={FLAGS.demo_dir}",
                    f"--serve_size={size}",
                    *(peer if has_peer else []),
                ],
            )
        )
    else:
        print(f"no trained demo model in --demo_dir={FLAGS.demo_dir}: inference bench left out")
    return commands


def _run_ours(name, argv, workdir):
    """({(figure, unit): ours}, {(figure, unit): peer}) of one bench script's JSON rows."""
    path = os.path.join(workdir, f"{name}.json")
    print(f"ours: {' '.join(argv)}", flush=True)
    script = os.path.join(_HERE, argv[0])
    subprocess.run([sys.executable, script, *argv[1:], f"--json_out={path}"], check=True)
    with open(path) as f:
        rows = json.load(f)
    ours = {(r["figure"], r["unit"]): r["ours"] for r in rows if r.get("ours") is not None}
    peer = {(r["figure"], r["unit"]): r["peer"] for r in rows if r.get("peer") is not None}
    return ours, peer


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
    missing = [path for path in (FLAGS.peer_python, FLAGS.peer_harness) if not os.path.exists(path)]
    has_peer = not missing
    ours_runs, peer_runs = [], []
    with tempfile.TemporaryDirectory(prefix="bench_") as workdir:
        for _ in range(FLAGS.rounds):
            for name, command in _our_commands(has_peer):
                ours, peer = _run_ours(name, command, workdir)
                ours_runs.append(ours)
                peer_runs.append(peer)
    ours, peer = _collect(ours_runs), _collect(peer_runs)
    rows = []
    for key in list(ours) + [k for k in peer if k not in ours]:
        mine, theirs = ours.get(key), peer.get(key)
        ratio = mine / theirs if mine is not None and theirs else None
        rows.append(
            {"figure": key[0], "unit": key[1], "ours": mine, "peer": theirs, "ratio": ratio}
        )
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    peer_note = "" if has_peer else f" (no peer: {' and '.join(missing)} not found)"
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
