"""The original framework's detection experiments with SpineNet, SpineNet-MBConv, EfficientNet or
NAS-FPN train: each file of `tests/data/original_configs/` that selects one of them (found by
its `architecture` keys, so a new file joins by itself) loads strictly, builds and runs 2
training steps through `main.py`'s code path (`main_lib.run`), at 128x128 with batch 2 on the
tiny shapes dataset (labels 1..3 fit the files' 91 classes).

The files' own widths are full size, and tests never train full-size models: an override
narrows every part (backbone, decoder, heads) and the proposal counts, keeping the files'
architecture choices (backbone, model id, decoder, block function, levels, cascade,
copy-paste, activations). The full-size builds are counted by `model_summary` (README,
"Backbones and feature pyramids"). The classification file trains in
`test_original_classification_configs.py`.
"""

import os
import pathlib

import pytest
import yaml

from detection import main_lib
from detection.configs import loader

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "original_configs"
NEW_BACKBONES = ("spinenet", "spinenet_mbconv")
SIZE = 128  # SpineNet and NAS-FPN give levels 3-7: the input must be a multiple of 2**7.


def _uses_new_parts(tree):
    architecture = tree.get("architecture", {})
    backbone = architecture.get("backbone", "")
    return (
        backbone in NEW_BACKBONES
        or backbone.startswith("efficientnet")
        or architecture.get("multilevel_features") == "nasfpn"
    )


def _model(tree):
    """The file's `type`, else the model its parser belongs to (the original's main.py flag)."""
    if "type" in tree:
        return tree["type"]
    parser = tree.get("architecture", {}).get("parser", "retinanet_parser")
    return {"retinanet_parser": "retinanet", "maskrcnn_parser": "mask_rcnn"}[parser]


def _detection_files():
    files = []
    for path in sorted(DATA.glob("*.yaml")):
        tree = yaml.safe_load(path.read_text()) or {}
        if tree.get("architecture", {}).get("parser") == "classification_parser":
            continue
        if _uses_new_parts(tree):
            files.append(path)
    return files


FILES = _detection_files()

NARROW = {
    "resnet": {"resnet_depth": 10},
    "spinenet": {"filter_size_scale": 0.1, "endpoints_num_filters": 8},
    "spinenet_mbconv": {"filter_size_scale": 0.2, "endpoints_num_filters": 8},
    "efficientnet": {"width_coefficient": 0.1, "depth_coefficient": 0.1},
    "fpn": {"fpn_feat_dims": 8},
    "nasfpn": {"fpn_feat_dims": 8, "num_repeats": 1},
}

PER_MODEL = {
    "retinanet": {
        "retinanet_head": {"num_convs": 1, "num_filters": 8},
        "retinanet_parser": {"output_size": [SIZE, SIZE], "max_num_instances": 8},
    },
    "mask_rcnn": {
        "rpn_head": {"num_filters": 8},
        "frcnn_head": {"num_filters": 8, "fc_dims": 16},
        "mrcnn_head": {"num_convs": 1, "num_filters": 8},
        "maskrcnn_parser": {"output_size": [SIZE, SIZE], "max_num_instances": 8},
        # Test-time sizes too: building the model runs inference once, eagerly, and an eager
        # NMS loop costs one Python iteration per kept box.
        "roi_proposal": {
            "rpn_pre_nms_top_k": 64,
            "rpn_post_nms_top_k": 16,
            "test_rpn_pre_nms_top_k": 64,
            "test_rpn_post_nms_top_k": 16,
        },
        "roi_sampling": {"num_samples_per_image": 16},
        "mask_sampling": {"num_mask_samples_per_image": 8},
        "postprocess": {"pre_nms_num_boxes": 64, "max_total_size": 16},
    },
}
PER_MODEL["cascade_mask_rcnn"] = PER_MODEL["mask_rcnn"]


def test_the_files_are_found():
    names = [path.name for path in FILES]
    for name in (
        "spinenet49_retinanet.yaml",
        "spinenet-mbconv49_retinanet.yaml",
        "spinenet49_mrcnn.yaml",
        "spinenet49s_mrcnn.yaml",
        "retinanet_nasfpn.yaml",
        "cascade_maskrcnn_effb7_nasfpn_1280.yaml",
    ):
        assert name in names


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_trains_two_steps(path, tiny_shapes, tmp_path, capsys):
    tree = yaml.safe_load(path.read_text())
    model = _model(tree)
    # The file's own choices survive the override.
    params = loader.load_params(model, [str(path)])
    for key in ("backbone", "multilevel_features"):
        assert params.architecture[key] == tree["architecture"].get(key, params.architecture[key])
    override = {
        **NARROW,
        **PER_MODEL[model],
        "train": {
            "train_batch_size": 2,
            "total_steps": 2,
            "iterations_per_loop": 2,
            "learning_rate": {"warmup_steps": 1},
            "train_file_pattern": tiny_shapes["train_file_pattern"],
            # Copy-paste files paste objects of these records (the original read its own).
            "pre_parser_dataset": {"file_pattern": tiny_shapes["train_file_pattern"]},
        },
    }
    model_dir = str(tmp_path / "run")
    argv = [
        f"--model={model}",
        f"--config_file={path}",
        f"--params_override={yaml.safe_dump(override)}",
        f"--model_dir={model_dir}",
        "--mode=train",
    ]
    assert main_lib.run(argv) == 0, capsys.readouterr().err[-2000:]
    assert os.path.exists(os.path.join(model_dir, "ckpt-2.index"))
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert progress and progress[-1].startswith("step 2/2 | loss ")
    # The run's saved params keep the file's architecture with the narrowed widths.
    saved = yaml.safe_load(open(os.path.join(model_dir, "params.yaml")))
    assert saved["architecture"]["backbone"] == params.architecture.backbone
    assert saved["architecture"]["multilevel_features"] == params.architecture.multilevel_features
