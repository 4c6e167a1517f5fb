"""`python main.py` end to end on a tiny RetinaNet: train_and_eval on 2 mirrored CPU replicas
with XLA, continuous eval and --eval_after_training of the final checkpoint, and a bad data
path. Each subprocess pays a TensorFlow start (~5 s) plus XLA compiles, so they are few."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from detection.configs import loader
from detection.hyperparameters import params_dict

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOTAL_STEPS = 4

TINY_CONFIG = {
    "type": "retinanet",
    "architecture": {"min_level": 3, "max_level": 5, "num_classes": 4, "use_bfloat16": False},
    "resnet": {"resnet_depth": 10},
    "fpn": {"fpn_feat_dims": 16},
    "retinanet_head": {"num_convs": 1, "num_filters": 16},
    "anchor": {"num_scales": 2, "anchor_size": 3.0},
    "retinanet_parser": {"output_size": [64, 64], "max_num_instances": 8},
    "train": {
        "train_batch_size": 4,
        "total_steps": TOTAL_STEPS,
        "iterations_per_loop": 2,
        "jit_compile": True,
        "learning_rate": {"type": "step", "warmup_steps": 0, "init_learning_rate": 0.01},
    },
    "eval": {"eval_batch_size": 4, "num_steps_per_eval": 2},
    # Threshold 0: the barely trained head still yields K scored boxes per image, so the
    # metrics depend on every weight (a zero-detection AP would compare equal regardless).
    "postprocess": {"max_total_size": 10, "pre_nms_num_boxes": 50, "score_threshold": 0.0},
}

# C++ logging of TensorFlow itself, not the program's output.
_TF_NATIVE_LOG = re.compile(
    r"^([IWEF]\d{4} |WARNING: All log messages before absl|"
    r"To enable the following instructions)"
)


def _data_override(paths, **eval_keys):
    return json.dumps(
        {
            "train": {"train_file_pattern": paths["train_file_pattern"]},
            "eval": dict(
                {
                    "eval_file_pattern": paths["val_file_pattern"],
                    "val_json_file": paths["val_annotations"],
                },
                **eval_keys,
            ),
        }
    )


def _main(*args):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _finish(process, timeout=300):
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"main.py timed out after {timeout} s: {err[-3000:]}") from None
    return process.returncode, out, err


def _program_stderr(err):
    return [line for line in err.splitlines() if line.strip() and not _TF_NATIVE_LOG.match(line)]


def _metrics(path):
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    return payload["step"], payload["metrics"]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny_retinanet.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return str(path)


@pytest.fixture(scope="module")
def train_and_eval_run(tmp_path_factory, config_file, tiny_shapes):
    """`--mode=train_and_eval` on 2 logical CPU replicas (global batch 4), XLA on."""
    model_dir = str(tmp_path_factory.mktemp("runs") / "train_and_eval")
    override = _data_override(tiny_shapes)
    code, out, err = _finish(
        _main(
            "--mode=train_and_eval",
            f"--config_file={config_file}",
            f"--params_override={override}",
            f"--model_dir={model_dir}",
            "--strategy_type=mirrored",
            "--num_cores=2",
        )
    )
    assert code == 0, err[-4000:]
    # Read now: --eval_after_training (mode train) rewrites params.yaml later.
    saved_params = params_dict.read_yaml_to_params_dict(os.path.join(model_dir, "params.yaml"))
    return {
        "model_dir": model_dir,
        "stdout": out,
        "override": override,
        "saved_params": saved_params,
    }


def test_train_and_eval_on_two_mirrored_replicas(train_and_eval_run, config_file):
    model_dir, out = train_and_eval_run["model_dir"], train_and_eval_run["stdout"]
    # Checkpoints at every host loop, named by the global step.
    with open(os.path.join(model_dir, "checkpoint"), encoding="utf-8") as f:
        state = f.read()
    assert 'model_checkpoint_path: "ckpt-4"' in state
    for step in (2, 4):
        assert os.path.exists(os.path.join(model_dir, f"ckpt-{step}.index"))
    # params.yaml holds exactly the resolved params of the run.
    saved = train_and_eval_run["saved_params"]
    expected = loader.load_params(
        None, [config_file], train_and_eval_run["override"], {"model_dir": model_dir}
    )
    assert saved == expected
    assert saved.train.jit_compile is True and saved.train.train_batch_size == 4
    # One progress line per host loop, one eval line per evaluation.
    progress = [line for line in out.splitlines() if line.startswith("step ")]
    assert [line.split(" |")[0] for line in progress] == ["step 2/4", "step 4/4"]
    assert re.match(
        r"step 4/4 \| loss [0-9.]+ \(box [0-9.e-]+, cls [0-9.e-]+, l2 [0-9.e-]+\) "
        r"\| lr 0\.01 \| [0-9.]+ img/s \| ETA 0s$",
        progress[-1],
    ), progress[-1]
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("eval ")] == [
        "eval at step 2",
        "eval at step 4",
    ]
    for step in (2, 4):
        recorded_step, metrics = _metrics(os.path.join(model_dir, "eval", f"metrics-{step}.json"))
        assert recorded_step == step
        for key in (
            "AP",
            "AP50",
            "AP75",
            "APs",
            "APm",
            "APl",
            "ARmax1",
            "ARmax10",
            "ARmax100",
            "losses/cls_loss",
            "losses/box_loss",
        ):
            assert isinstance(metrics[key], float), key
        assert 0.0 <= metrics["AP"] <= 1.0 and metrics["losses/cls_loss"] > 0
        # 64 px scenes: every shape is COCO-small, so medium/large have nothing to rank.
        assert metrics["APm"] == metrics["APl"] == -1.0
    for subdir in ("train", "eval"):
        assert any(
            name.startswith("events.out.tfevents")
            for name in os.listdir(os.path.join(model_dir, subdir))
        )


def test_continuous_eval_and_eval_after_training_reproduce_final_metrics(
    train_and_eval_run, config_file, tiny_shapes
):
    """Both re-evaluate ckpt-4 in a new process: the metrics equal train_and_eval's own
    evaluation of the in-memory model, so every variable (batch-norm statistics included)
    is restored. The two runs are independent and share the 2 cores, so they run together."""
    model_dir = train_and_eval_run["model_dir"]
    _, final = _metrics(os.path.join(model_dir, "eval", f"metrics-{TOTAL_STEPS}.json"))
    common = [
        f"--config_file={config_file}",
        f"--model_dir={model_dir}",
        "--strategy_type=mirrored",
        "--num_cores=2",
    ]
    continuous = _main(
        "--mode=eval",
        *common,
        "--params_override="
        + _data_override(tiny_shapes, eval_timeout=1, min_eval_interval=0, suffix="continuous"),
    )
    # Training is already at total_steps: it resumes, trains nothing, then evaluates the
    # final checkpoint at once (default eval_timeout and min_eval_interval: no waiting).
    after_training = _main(
        "--mode=train",
        "--eval_after_training",
        *common,
        "--params_override=" + _data_override(tiny_shapes, suffix="after_training"),
    )
    results = {"continuous": _finish(continuous), "after_training": _finish(after_training)}
    for suffix, (code, out, err) in results.items():
        assert code == 0, f"{suffix}: {err[-4000:]}"
        files = os.listdir(os.path.join(model_dir, f"eval_{suffix}"))
        assert [f for f in files if f.endswith(".json")] == [f"metrics-{TOTAL_STEPS}.json"]
        step, metrics = _metrics(
            os.path.join(model_dir, f"eval_{suffix}", f"metrics-{TOTAL_STEPS}.json")
        )
        assert step == TOTAL_STEPS
        assert metrics.keys() == final.keys()
        for key, value in final.items():
            assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (suffix, key)
        assert f"eval at step {TOTAL_STEPS}:" in out
        assert not any(line.startswith("step ") for line in out.splitlines()), out
    assert sorted(p for p in os.listdir(model_dir) if p.endswith(".index")) == [
        "ckpt-2.index",
        "ckpt-4.index",
    ]


def test_unmatched_train_file_pattern_exits_2_with_one_line(tmp_path, config_file):
    pattern = str(tmp_path / "missing" / "train-*.tfrecord")
    code, out, err = _finish(
        _main(
            "--mode=train",
            f"--config_file={config_file}",
            f"--model_dir={tmp_path / 'run'}",
            f"--params_override=train.train_file_pattern={pattern}",
        )
    )
    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    lines = _program_stderr(err)
    assert lines == [f"main.py: error: File pattern {pattern!r} matches no files"], lines
    # Only log lines of the set-up (the variable count) precede the error: no training step.
    assert all(line.startswith("INFO:") for line in out.splitlines()), out
    assert not any(name.startswith("ckpt-") for name in os.listdir(tmp_path / "run"))
