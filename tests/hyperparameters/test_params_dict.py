"""ParamsDict: access, overrides, strictness, types, restrictions, lock, YAML round trip."""

import pytest

from detection.hyperparameters import (
    ParamsDict,
    ParamsError,
    override_params_dict,
    parse_override,
    read_yaml_to_params_dict,
    save_params_dict_to_yaml,
)


def _params(restrictions=None):
    return ParamsDict(
        {
            "model_dir": "",
            "train": {
                "total_steps": 100,
                "learning_rate": {"init_learning_rate": 0.08, "learning_rate_steps": [10, 20]},
                "frozen_variable_prefix": None,
                "use_thing": True,
            },
            "eval": {"eval_batch_size": 8, "eval_timeout": None},
            "anchor": {"aspect_ratios": [1.0, 2.0, 0.5], "anchor_size": 4.0},
        },
        restrictions,
    )


def test_nested_attribute_access_and_as_dict():
    params = _params()
    assert params.train.learning_rate.init_learning_rate == 0.08
    assert params["train"]["total_steps"] == 100
    assert params.as_dict()["anchor"] == {"aspect_ratios": [1.0, 2.0, 0.5], "anchor_size": 4.0}
    assert "train" in params and "nope" not in params


def test_as_dict_is_a_copy():
    params = _params()
    params.as_dict()["train"]["total_steps"] = 5
    assert params.train.total_steps == 100


def test_equality():
    assert _params() == _params()
    other = _params()
    other.train.total_steps = 7
    assert other != _params()


def test_override_from_dict():
    params = _params()
    params.override({"train": {"learning_rate": {"init_learning_rate": 0.1}}})
    assert params.train.learning_rate.init_learning_rate == 0.1
    assert params.train.learning_rate.learning_rate_steps == [10, 20]


def test_unknown_key_names_full_path_and_close_match():
    params = _params()
    with pytest.raises(ParamsError) as info:
        params.override({"train": {"learning_rate": {"init_learnig_rate": 0.1}}})
    message = str(info.value)
    assert "'train.learning_rate.init_learnig_rate'" in message
    assert "did you mean 'train.learning_rate.init_learning_rate'" in message


def test_unknown_key_without_close_match_lists_siblings():
    with pytest.raises(ParamsError, match=r"'eval' has: eval_batch_size, eval_timeout"):
        _params().override({"eval": {"zzzz": 1}})


def test_attribute_read_of_unknown_key_suggests():
    with pytest.raises(AttributeError, match="did you mean 'train.total_steps'"):
        _ = _params().train.total_step


def test_non_strict_adds_keys():
    params = _params()
    params.override({"train": {"new_key": 3}}, is_strict=False)
    assert params.train.new_key == 3


@pytest.mark.parametrize(
    "override, old, new",
    [
        ({"train": {"total_steps": "ten"}}, "int", "str"),
        ({"anchor": {"anchor_size": [1.0]}}, "float", "list"),
        ({"anchor": {"aspect_ratios": 1.0}}, "list", "float"),
        ({"train": {"use_thing": 1}}, "bool", "int"),
        ({"train": {"learning_rate": 0.1}}, "a section", "float"),
    ],
)
def test_type_mismatch_names_key_and_both_types(override, old, new):
    with pytest.raises(ParamsError) as info:
        _params().override(override)
    message = str(info.value)
    assert "wrong type for '" in message
    assert f"was {old}" in message and f"got {new}" in message


def test_int_and_float_interchange():
    params = _params()
    params.override({"anchor": {"anchor_size": 3}, "train": {"total_steps": 5.0}})
    assert params.anchor.anchor_size == 3
    assert params.train.total_steps == 5.0


def test_none_default_accepts_any_type_and_values_can_become_none():
    params = _params()
    params.override(
        {
            "train": {"frozen_variable_prefix": "resnet/"},
            "eval": {"eval_timeout": 600, "eval_batch_size": None},
        }
    )
    assert params.train.frozen_variable_prefix == "resnet/"
    assert params.eval.eval_timeout == 600
    assert params.eval.eval_batch_size is None


def test_lock_rejects_every_write():
    params = _params()
    params.lock()
    with pytest.raises(ParamsError, match="locked"):
        params.train.total_steps = 1
    with pytest.raises(ParamsError, match="locked"):
        params.train.learning_rate.override({"init_learning_rate": 1.0})
    with pytest.raises(ParamsError, match="locked"):
        params["model_dir"] = "x"
    assert params.train.total_steps == 100


def test_setattr_is_strict_and_typed():
    params = _params()
    params.train.total_steps = 3
    assert params.train.total_steps == 3
    with pytest.raises(ParamsError, match="unknown parameter 'train.totl_steps'"):
        params.train.totl_steps = 3


@pytest.mark.parametrize(
    "text",
    [
        "{train: {total_steps: 10}, eval: {eval_batch_size: 2}}",
        '{"train": {"total_steps": 10}, "eval": {"eval_batch_size": 2}}',
        "train.total_steps=10,eval.eval_batch_size=2",
        "train:\n  total_steps: 10\neval:\n  eval_batch_size: 2\n",
    ],
)
def test_override_string_forms(text):
    params = _params()
    override_params_dict(params, text)
    assert params.train.total_steps == 10 and params.eval.eval_batch_size == 2


def test_comma_form_with_lists_and_nested_keys():
    parsed = parse_override(
        "anchor.aspect_ratios=[1.0,2.0],train.learning_rate.init_learning_rate=1e-4"
    )
    assert parsed == {
        "anchor": {"aspect_ratios": [1.0, 2.0]},
        "train": {"learning_rate": {"init_learning_rate": 1e-4}},
    }


def test_override_from_yaml_file(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("train:\n  learning_rate:\n    init_learning_rate: 1e-4\n")
    params = _params()
    override_params_dict(params, str(path))
    assert params.train.learning_rate.init_learning_rate == pytest.approx(1e-4)
    assert isinstance(params.train.learning_rate.init_learning_rate, float)


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e-4", 1e-4),
        ("5E3", 5e3),
        ("-2.5e+2", -250.0),
        (".5", 0.5),
        ("3", 3),
        ("1.0e-05", 1e-5),
    ],
)
def test_scientific_numbers_parse_as_floats(text, value):
    parsed = parse_override(f"{{x: {text}}}")["x"]
    assert parsed == value and type(parsed) is type(value)


def test_missing_override_file_is_named():
    with pytest.raises(ParamsError, match="override file not found: /no/such.yaml"):
        parse_override("/no/such.yaml")


def test_bad_override_string():
    with pytest.raises(ParamsError, match="must be a mapping"):
        parse_override("[1, 2]")
    with pytest.raises(ParamsError, match="invalid YAML"):
        parse_override("{train: {total_steps: 10}")


@pytest.mark.parametrize(
    "restriction, ok",
    [
        ("train.total_steps == 100", True),
        ("train.total_steps != 100", False),
        ("train.total_steps < 100", False),
        ("train.total_steps <= 100", True),  # The original parsed `<=` as `<` and rejected this.
        ("train.total_steps > 100", False),
        ("train.total_steps >= 100", True),
        ("eval.eval_batch_size < train.total_steps", True),
        ("eval.eval_batch_size >= train.total_steps", False),
    ],
)
def test_restrictions(restriction, ok):
    params = _params([restriction])
    if ok:
        params.validate()
    else:
        with pytest.raises(ParamsError, match="restriction violated"):
            params.validate()


def test_restriction_violation_names_both_keys_and_values():
    params = _params(["eval.eval_batch_size == train.total_steps"])
    with pytest.raises(ParamsError) as info:
        params.validate()
    message = str(info.value)
    assert "eval.eval_batch_size=8" in message and "train.total_steps=100" in message


def test_restriction_with_unknown_key_is_reported():
    with pytest.raises(ParamsError, match="unknown parameter 'train.nope'"):
        _params(["train.nope == train.total_steps"]).validate()


def test_save_and_load_round_trip(tmp_path):
    params = _params()
    params.override(
        {
            "train": {
                "learning_rate": {"init_learning_rate": 1e-4},
                "frozen_variable_prefix": r"(resnet\d+/)conv2d",
            }
        }
    )
    path = tmp_path / "model" / "params.yaml"
    save_params_dict_to_yaml(params, str(path))
    assert read_yaml_to_params_dict(str(path)) == params
