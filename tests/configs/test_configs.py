"""Default params keep the original framework's schema; its YAML files load strictly."""

import pathlib

import pytest
import yaml

from detection.configs import factory, loader
from detection.hyperparameters import ParamsError

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"

# Keys this framework adds to the original schema (each documented where it is defined).
RANDAUGMENT_KEYS = {"randaug_num_layers", "randaug_magnitude"}
NEW_KEYS = {
    "retinanet": {"nasfpn.min_level", "nasfpn.max_level"}
    | {f"retinanet_parser.{key}" for key in RANDAUGMENT_KEYS},
    "mask_rcnn": {"nasfpn.min_level", "nasfpn.max_level"}
    | {f"maskrcnn_parser.{key}" for key in RANDAUGMENT_KEYS | {"aug_policy"}},
    "cascade_mask_rcnn": {"nasfpn.min_level", "nasfpn.max_level"}
    | {f"maskrcnn_parser.{key}" for key in RANDAUGMENT_KEYS | {"aug_policy"}},
    "shapemask": {"nasfpn.min_level", "nasfpn.max_level"}
    | {f"shapemask_parser.{key}" for key in RANDAUGMENT_KEYS | {"aug_policy"}},
    "classification": {"architecture.multilevel_features"}
    | {f"classification_parser.{key}" for key in RANDAUGMENT_KEYS | {"aug_policy"}},
    "segmentation": {"nasfpn.min_level", "nasfpn.max_level"},
}
EXECUTOR_KEYS = {"train.checkpoint_interval", "train.checkpoint_max_to_keep", "train.jit_compile"}
# faster-coco-eval instead of pycocotools (the detectors' COCO evaluation).
for _model in ("retinanet", "mask_rcnn", "cascade_mask_rcnn", "shapemask"):
    NEW_KEYS[_model] = NEW_KEYS[_model] | {"eval.use_fast_coco_eval"}
# The scaling of the backbones' model ids, each value overridable (base_config.py).
BACKBONE_KEYS = {
    "spinenet.endpoints_num_filters",
    "spinenet.filter_size_scale",
    "spinenet.resample_alpha",
    "spinenet.block_repeats",
    "spinenet_mbconv.endpoints_num_filters",
    "spinenet_mbconv.filter_size_scale",
    "spinenet_mbconv.block_repeats",
    "efficientnet.width_coefficient",
    "efficientnet.depth_coefficient",
}
NEW_KEYS = {model: keys | EXECUTOR_KEYS | BACKBONE_KEYS for model, keys in NEW_KEYS.items()}


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


# The original registered `cascade_mask_rcnn` with the `mask_rcnn` defaults (its cascade is
# switched on by roi_sampling.cascade_iou_thresholds); only the type differs.
DEFAULTS_FILE = {"cascade_mask_rcnn": "mask_rcnn"}


def _original_defaults(model):
    name = DEFAULTS_FILE.get(model, model)
    original = yaml.safe_load((DATA / "original_defaults" / f"{name}.yaml").read_text())
    original["type"] = model
    return _flatten(original)


@pytest.mark.parametrize("model", factory.MODELS)
def test_defaults_match_original_schema(model):
    original = _original_defaults(model)
    ours = _flatten(factory.config_generator(model).as_dict())
    missing = set(original) - set(ours)
    assert not missing, f"keys of the original missing here: {sorted(missing)}"
    extra = set(ours) - set(original)
    assert extra <= NEW_KEYS[model], f"undocumented new keys: {sorted(extra - NEW_KEYS[model])}"
    different = {
        k: (original[k], ours[k])
        for k in original
        if original[k] != ours[k] or type(original[k]) is not type(ours[k])
    }
    assert not different


@pytest.mark.parametrize("model", factory.MODELS)
def test_defaults_satisfy_their_restrictions(model):
    factory.config_generator(model).validate()


MODEL_OF_CONFIG = {
    "retinanet_autoaugment.yaml": "retinanet",
    "retinanet_nasfpn.yaml": "retinanet",
    "spinenet49_retinanet.yaml": "retinanet",
    "spinenet49_mrcnn.yaml": "mask_rcnn",
    "spinenet49s_mrcnn.yaml": "mask_rcnn",
    "spinenet-mbconv49_retinanet.yaml": "retinanet",
    "cascade_maskrcnn_effb7_nasfpn_1280.yaml": "cascade_mask_rcnn",
    "maskrcnn_resnet50_1024_copy_paste.yaml": "cascade_mask_rcnn",
    "spinenet49_classification.yaml": "classification",
}


def test_every_original_config_is_mapped():
    assert sorted(p.name for p in (DATA / "original_configs").glob("*.yaml")) == sorted(
        MODEL_OF_CONFIG
    )


@pytest.mark.parametrize("name, model", sorted(MODEL_OF_CONFIG.items()))
def test_original_configs_load_strictly(name, model):
    path = DATA / "original_configs" / name
    params = loader.load_params(model, [str(path)])
    overrides = _flatten(yaml.safe_load(path.read_text()))
    resolved = _flatten(params.as_dict())
    for key, value in overrides.items():
        assert resolved[key] == value, key
    assert params.locked


def test_shapemask_restriction_catches_mismatch():
    with pytest.raises(ParamsError) as error:
        loader.load_params("shapemask", params_override="shapemask_head.mask_crop_size=16")
    # The message names both keys and their values.
    assert "shapemask_head.mask_crop_size=16" in str(error.value)
    assert "shapemask_parser.mask_crop_size=32" in str(error.value)


def test_unsupported_key_is_an_error():
    with pytest.raises(ParamsError, match="num_cores_per_replica.*not supported"):
        loader.load_params("retinanet", params_override="train.num_cores_per_replica=2")


def test_inert_key_logs_no_effect(caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        loader.load_params("retinanet", params_override="{isolate_session_state: true}")
    assert any(
        "isolate_session_state" in r.getMessage() and "no effect" in r.getMessage()
        for r in caplog.records
    )


def test_model_from_type_key(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("type: mask_rcnn\n")
    assert loader.load_params(None, [str(path)]).type == "mask_rcnn"
    with pytest.raises(ParamsError, match="--model=retinanet but the config files say"):
        loader.load_params("retinanet", [str(path)])


def test_config_files_apply_in_order_then_override(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("train: {total_steps: 10, train_batch_size: 4}\n")
    second.write_text("train: {total_steps: 20}\n")
    params = loader.load_params("retinanet", [str(first), str(second)], "train.train_batch_size=8")
    assert params.train.total_steps == 20 and params.train.train_batch_size == 8
