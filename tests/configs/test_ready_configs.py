"""Every ready experiment under configs/ loads strictly and documents itself."""

import pathlib

import pytest
import yaml

from detection import main_lib
from detection.configs import factory, loader
from detection.modeling.backbones import factory as backbones_factory
from detection.modeling.backbones import spinenet

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
READY = sorted((ROOT / "configs").rglob("*.yaml"))


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def test_configs_found():
    assert ROOT / "configs" / "retinanet" / "r50_fpn_640.yaml" in READY


@pytest.mark.parametrize("path", READY, ids=_ids(READY))
def test_loads_strictly_and_prints(path, capsys):
    params = loader.load_params(None, [str(path)])
    assert params.type in factory.MODELS
    assert main_lib.run([f"--config_file={path}", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["type"] == params.type


@pytest.mark.parametrize("path", READY, ids=_ids(READY))
def test_header_says_what_and_how(path):
    text = path.read_text()
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 3, f"{path}: starts without a comment saying what it trains"
    # The command in the header names this very file.
    assert f"--config_file={path.relative_to(ROOT)}" in "\n".join(header)


def test_r50_fpn_640_is_the_original_default_recipe_with_scale_jitter():
    path = ROOT / "configs" / "retinanet" / "r50_fpn_640.yaml"
    original = _flatten(yaml.safe_load((DATA / "original_defaults" / "retinanet.yaml").read_text()))
    ours = _flatten(loader.load_params(None, [str(path)]).as_dict())
    differing = {key for key, value in original.items() if ours[key] != value}
    assert differing == {
        "retinanet_parser.aug_scale_min",
        "retinanet_parser.aug_scale_max",
        "train.train_file_pattern",
        "eval.eval_file_pattern",
        "eval.val_json_file",
    }
    assert (ours["retinanet_parser.aug_scale_min"], ours["retinanet_parser.aug_scale_max"]) == (
        0.8,
        1.2,
    )
    assert ours["retinanet_parser.output_size"] == [640, 640]
    assert (ours["train.train_batch_size"], ours["train.total_steps"]) == (64, 22500)
    assert ours["train.train_file_pattern"] == "gs://<bucket>/coco/train-*"


def test_mask_rcnn_r50_fpn_1024_is_exactly_the_original_default_recipe():
    path = ROOT / "configs" / "mask_rcnn" / "r50_fpn_1024.yaml"
    original = _flatten(yaml.safe_load((DATA / "original_defaults" / "mask_rcnn.yaml").read_text()))
    ours = _flatten(loader.load_params(None, [str(path)]).as_dict())
    differing = {key for key, value in original.items() if ours[key] != value}
    assert differing == {"train.train_file_pattern", "eval.eval_file_pattern", "eval.val_json_file"}
    assert ours["maskrcnn_parser.output_size"] == [1024, 1024]


def test_shapes_spinenet_is_a_49s_or_smaller():
    # Issue 10 asks for a SpineNet-49S (or smaller) on the shapes data: the 49S wiring and
    # block repeats, widths at most 49S's. The layer is only constructed, not run.
    path = ROOT / "configs" / "shapes" / "spinenet49s.yaml"
    params = loader.load_params(None, [str(path)])
    assert (params.architecture.backbone, params.spinenet.model_id) == ("spinenet", "49S")
    backbone = backbones_factory.backbone_from_params(params)
    assert tuple(node.spec for node in backbone.nodes) == spinenet.SPINENET_BLOCK_SPECS
    published = spinenet.scaling_for("49S")
    ours = backbone.scaling
    assert ours["block_repeats"] == published["block_repeats"]
    # Narrower blocks and endpoints than 49S; the cross-scale connections may use either
    # published resample alpha (0.5 for 49S-96, 1.0 for 143-190).
    for key in ("filter_size_scale", "endpoints_num_filters"):
        assert 0 < ours[key] <= published[key], key
    assert ours["resample_alpha"] in (0.5, 1.0)
