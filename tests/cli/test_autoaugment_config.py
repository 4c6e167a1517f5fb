"""The original framework's `retinanet_autoaugment.yaml` (aug_policy v0) trains through
`python main.py`, with a tiny model and the tiny shapes data layered on top of it."""

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from detection.hyperparameters import params_dict

ROOT = pathlib.Path(__file__).resolve().parents[2]
AUTOAUGMENT_CONFIG = ROOT / "tests" / "data" / "original_configs" / "retinanet_autoaugment.yaml"
TOTAL_STEPS = 2

TINY = {
    "architecture": {"min_level": 3, "max_level": 5, "num_classes": 4, "use_bfloat16": False},
    "resnet": {"resnet_depth": 10},
    "fpn": {"fpn_feat_dims": 16},
    "retinanet_head": {"num_convs": 1, "num_filters": 16},
    "anchor": {"num_scales": 2, "anchor_size": 3.0},
    "retinanet_parser": {"output_size": [64, 64], "max_num_instances": 8},
    "train": {
        "train_batch_size": 4,
        "total_steps": TOTAL_STEPS,
        "iterations_per_loop": 1,
        "jit_compile": False,
        "learning_rate": {
            "warmup_steps": 0,
            "init_learning_rate": 0.01,
            "learning_rate_steps": [100, 200],
        },
    },
}


@pytest.mark.slow
def test_retinanet_autoaugment_yaml_trains(tmp_path, tiny_shapes):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(TINY))
    model_dir = tmp_path / "run"
    override = json.dumps({"train": {"train_file_pattern": tiny_shapes["train_file_pattern"]}})
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "--model=retinanet",
            "--mode=train",
            f"--config_file={AUTOAUGMENT_CONFIG}",
            f"--config_file={tiny}",
            f"--params_override={override}",
            f"--model_dir={model_dir}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    params = params_dict.read_yaml_to_params_dict(str(model_dir / "params.yaml"))
    assert params.retinanet_parser.aug_policy == "v0"
    assert (params.retinanet_parser.aug_scale_min, params.retinanet_parser.aug_scale_max) == (
        0.8,
        1.2,
    )
    assert os.path.exists(model_dir / f"ckpt-{TOTAL_STEPS}.index")
    losses = [
        float(match.group(1))
        for match in re.finditer(r"^step \d+/\d+ \| loss ([0-9.]+)", result.stdout, re.M)
    ]
    assert len(losses) == TOTAL_STEPS and all(math.isfinite(loss) for loss in losses)
