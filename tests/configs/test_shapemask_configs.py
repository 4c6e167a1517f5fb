"""The ready ShapeMask experiments: the COCO recipe is the original's defaults (but for data
paths, TFRecords and the frozen layers spelled with this framework's names), and the shapes
partially supervised split."""

import pathlib

import tensorflow as tf
import yaml

from detection.configs import loader
from detection.executor import variable_selection
from detection.modeling.networks import factory as network_factory

ROOT = pathlib.Path(__file__).resolve().parents[2]
ORIGINAL = ROOT / "tests" / "data" / "original_defaults" / "shapemask.yaml"
R50 = ROOT / "configs" / "shapemask" / "r50_640.yaml"


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def test_r50_640_is_the_original_default_recipe():
    original = _flatten(yaml.safe_load(ORIGINAL.read_text()))
    ours = _flatten(loader.load_params(None, [str(R50)]).as_dict())
    differing = {key for key, value in original.items() if ours[key] != value}
    assert differing == {
        "train.train_dataset_type",
        "eval.eval_dataset_type",
        "train.train_file_pattern",
        "eval.eval_file_pattern",
        "eval.val_json_file",
        "shapemask_head.shape_prior_path",
        "train.frozen_variable_prefix",
    }
    assert ours["train.train_dataset_type"] == ours["eval.eval_dataset_type"] == "tfrecord"


def test_r50_640_freezes_the_stem_and_first_stage_convolutions():
    """What the original's `(resnet\\d+/)conv2d(|_([1-9]|10))/` froze: its 11 first convs."""
    params = loader.load_params(None, [str(R50)], "shapemask_head.shape_prior_path=''")
    network = network_factory.shapemask_network_from_params(params)
    network(tf.zeros([1, 128, 128, 3]), training=False)
    _, frozen = variable_selection.split_frozen(
        network.trainable_variables, params.train.frozen_variable_prefix
    )
    names = sorted(variable_selection.tf1_name(v).split("/resnet/")[1] for v in frozen)
    blocks = [f"group1_block{b}/conv{c}/conv/kernel:0" for b in range(3) for c in range(3)]
    assert names == sorted(
        ["stem_conv/conv/kernel:0", "group1_block0/projection/conv/kernel:0"] + blocks
    )


def test_shapes_partial_split():
    params = loader.load_params(
        None,
        [
            str(ROOT / "configs" / "shapes" / "shapemask.yaml"),
            str(ROOT / "configs" / "shapes" / "shapemask_partial.yaml"),
        ],
    )
    assert params.shapemask_parser.mask_train_class == "1,2"
    assert params.eval.mask_eval_class == "3"
    assert params.shapemask_head.use_category_for_mask is False
    assert params.shapemask_parser.output_size == [128, 128]  # the shapes config underneath
