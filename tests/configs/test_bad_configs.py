"""Malformed configs and overrides: each is a one-line ParamsError naming the key or file
(issue 15, item 3). The command-line side (exit 2, one stderr line) is in
tests/cli/test_bad_inputs.py."""

import pytest

from detection.configs import loader
from detection.hyperparameters import ParamsError, yaml_io


def _error(config_text=None, overrides=(), model="retinanet", tmp_path=None, raw=None):
    files = []
    if config_text is not None or raw is not None:
        path = tmp_path / "config.yaml"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text(config_text, encoding="utf-8")
        files.append(str(path))
    with pytest.raises(ParamsError) as info:
        loader.load_params(model, files, list(overrides))
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_non_utf8_file_names_the_file_and_line(tmp_path):
    message = _error(raw=b"train:\n  train_file_pattern: caf\xe9\n", tmp_path=tmp_path)
    assert f"{tmp_path}/config.yaml is not UTF-8 text: byte 0xe9 on line 2" in message


def test_non_utf8_override_from_the_command_line():
    # Python hands undecodable argv bytes over as lone surrogates.
    message = _error(overrides=["train.train_file_pattern=caf\udce9"])
    assert "is not valid UTF-8 text" in message and "train.train_file_pattern" in message


@pytest.mark.parametrize(
    "text",
    [
        "architecture:\n  pre_parser: " + "[" * 40 + "]" * 40 + "\n",
        "architecture:\n  pre_parser: " + "{a: " * 40 + "1" + "}" * 40 + "\n",
        "a: " + "[" * 5000 + "]" * 5000 + "\n",  # Past Python's recursion limit.
    ],
)
def test_deep_nesting_is_refused_before_the_recursion_limit(tmp_path, text):
    assert "nesting deeper than 32 levels" in _error(text, tmp_path=tmp_path)


def test_deep_nesting_in_an_override():
    message = _error(overrides=["architecture.pre_parser=" + "[" * 3000 + "]" * 3000])
    assert "nesting deeper than 32 levels" in message
    assert "architecture.pre_parser" in message


@pytest.mark.parametrize(
    "override, key, item",
    [
        ("anchor.aspect_ratios=[[1.0, 2.0]]", "anchor.aspect_ratios", "item 0 is list"),
        (
            "train.learning_rate.learning_rate_levels=[a, b]",
            "train.learning_rate.learning_rate_levels",
            "item 0 is str ('a')",
        ),
        ("retinanet_parser.output_size=[640, '640']", "retinanet_parser.output_size", "item 1"),
        ("anchor.aspect_ratios=[1.0, null]", "anchor.aspect_ratios", "item 1 is null"),
    ],
)
def test_list_items_of_the_wrong_kind(override, key, item):
    message = _error(overrides=[override])
    assert f"wrong item type in '{key}': {item}" in message
    assert "must be numbers" in message


def test_list_item_kind_survives_an_emptied_list():
    message = _error(overrides=["anchor.aspect_ratios=[]", "anchor.aspect_ratios=[x]"])
    assert "wrong item type in 'anchor.aspect_ratios'" in message


@pytest.mark.parametrize("value", ["5", "[1, 2]", "abc", "null"])
def test_scalar_where_a_section_is_expected_is_short(value):
    message = _error(overrides=[f"{{train: {value}}}"])
    assert "'train'" in message and "a section (iterations_per_loop" in message
    assert "total_steps': 22500" not in message  # The section is not dumped.


def test_duplicate_keys_in_a_file_name_the_key_and_both_lines(tmp_path):
    message = _error(
        "train:\n  total_steps: 5\n  iterations_per_loop: 1\n  total_steps: 6\n", tmp_path=tmp_path
    )
    assert "line 4, column 3: duplicate key 'total_steps'" in message
    assert "first appears on line 2" in message


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("{train: {total_steps: 1, total_steps: 2}}", "duplicate key 'total_steps'"),
        ("train.total_steps=1,train.total_steps=2", "sets 'train.total_steps' twice"),
        ("train.total_steps=2,train={total_steps: 1}", "sets 'train' and keys under it"),
    ],
)
def test_duplicate_keys_in_an_override(override, fragment):
    assert fragment in _error(overrides=[override])


def test_merge_keys_may_still_be_overridden():
    text = "base: &b {total_steps: 3, iterations_per_loop: 1}\ntrain:\n  <<: *b\n  total_steps: 4\n"
    data = yaml_io.load_yaml_string(text)
    assert data["train"] == {"total_steps": 4, "iterations_per_loop": 1}


def test_repeated_overrides_apply_in_order(tmp_path):
    (tmp_path / "a.yaml").write_text("train: {total_steps: 7}\n")
    params = loader.load_params(
        "retinanet",
        [str(tmp_path / "a.yaml")],
        ["train.total_steps=8,eval.eval_batch_size=4", "{train: {total_steps: 9}}"],
    )
    assert params.train.total_steps == 9 and params.eval.eval_batch_size == 4
    message = _error(overrides=["train.total_steps=8", "train.totl_steps=9"])
    assert message.startswith("--params_override #2: unknown parameter 'train.totl_steps'")


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "retinanet_parser.output_size=[100, 100]",
            "retinanet_parser.output_size=[100, 100] is not divisible by "
            "2**architecture.max_level = 128 (the coarsest feature stride); use e.g. [128, 128]",
        ),
        (
            "architecture.max_level=8",
            "retinanet_parser.output_size=[640, 640] is not divisible by "
            "2**architecture.max_level = 256",
        ),
        ("retinanet_parser.output_size=[640]", "must be [height, width], two positive integers"),
        ("retinanet_parser.output_size=[0, 640]", "must be [height, width]"),
        ("retinanet_parser.output_size=[640.5, 640]", "must be [height, width]"),
        ("train.total_steps=1.5", "train.total_steps=1.5: must be an integer >= 1"),
        ("architecture.num_classes=1", "architecture.num_classes=1: must be an integer >= 2"),
        ("architecture.min_level=1", "architecture.min_level=1: must be an integer >= 2"),
        ("anchor.num_scales=0", "anchor.num_scales=0: must be an integer >= 1"),
        ("anchor.anchor_size=0", "anchor.anchor_size=0: must be > 0"),
        ("anchor.aspect_ratios=[]", "anchor.aspect_ratios=[]: must be a non-empty list"),
        ("train.total_steps=.inf", "wrong value for 'train.total_steps'"),
        ("train.total_steps=" + "9" * 30, "must be an integer >= 1 and < 2**63"),
        ("type=mask_rcnn", "type: mask_rcnn is set by an override, but the model is retinanet"),
        ("anchor=null", "'anchor' is a section (num_scales, aspect_ratios, anchor_size)"),
        ("architecture.max_level=null", "architecture.max_level cannot be null (its default is 7)"),
        ("architecture.use_bfloat16=null", "architecture.use_bfloat16 cannot be null"),
    ],
)
def test_values_the_architecture_cannot_take(override, message):
    assert message in _error(overrides=[override])


def test_maskrcnn_output_size_checked_with_its_levels():
    message = _error(overrides=["maskrcnn_parser.output_size=[1000, 1000]"], model="mask_rcnn")
    assert "maskrcnn_parser.output_size=[1000, 1000] is not divisible by" in message
    assert "= 64" in message  # mask_rcnn's max_level is 6.


def test_classification_takes_any_input_size():
    params = loader.load_params(
        "classification", [], ["classification_parser.output_size=[224, 200]"]
    )
    assert params.classification_parser.output_size == [224, 200]


def test_integral_float_becomes_int():
    params = loader.load_params("retinanet", [], ["train.total_steps=1e4"])
    assert params.train.total_steps == 10000 and isinstance(params.train.total_steps, int)


@pytest.mark.parametrize("type_value", ["[retinanet]", "{a: 1}", "7"])
def test_unhashable_or_unknown_type_in_a_file(tmp_path, type_value):
    message = _error(f"type: {type_value}\n", model=None, tmp_path=tmp_path)
    assert message.startswith("unknown model")
