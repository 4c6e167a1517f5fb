"""The original framework's classification experiments train: its default recipe (ResNet-50,
`original_defaults/classification.yaml`) and every original classification file run 2
training steps through `main.py`'s code path, each at 64x64 with batch 2 and a 1-step warmup
on the tiny classification shapes dataset (labels 1..3 fit the 1001 classes)."""

import os
import pathlib

import pytest
import yaml

from detection import main_lib

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
DEFAULTS = DATA / "original_defaults" / "classification.yaml"


def _classification_files():
    files = []
    for path in sorted((DATA / "original_configs").glob("*.yaml")):
        tree = yaml.safe_load(path.read_text()) or {}
        if tree.get("architecture", {}).get("parser") == "classification_parser":
            files.append(path)
    return files


FILES = _classification_files()
RUNNABLE = [DEFAULTS] + FILES


def test_the_classification_files_are_found():
    assert "spinenet49_classification.yaml" in [path.name for path in FILES]


@pytest.mark.parametrize("path", RUNNABLE, ids=[path.name for path in RUNNABLE])
def test_trains_two_steps(path, tiny_classification_shapes, tmp_path, capsys):
    model_dir = str(tmp_path / "run")
    override = {
        "train": {
            "train_batch_size": 2,
            "total_steps": 2,
            "iterations_per_loop": 2,
            # The cosine schedule needs its warmup to end before total_steps.
            "learning_rate": {"warmup_steps": 1},
            "train_file_pattern": tiny_classification_shapes["train_file_pattern"],
        },
        "classification_parser": {"output_size": [64, 64]},
    }
    argv = [
        "--model=classification",
        f"--config_file={path}",
        f"--params_override={yaml.safe_dump(override)}",
        f"--model_dir={model_dir}",
        "--mode=train",
    ]
    assert main_lib.run(argv) == 0, capsys.readouterr().err[-2000:]
    assert os.path.exists(os.path.join(model_dir, "ckpt-2.index"))
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert progress and progress[-1].startswith("step 2/2 | loss ")
