"""main.py: flags, --print_config, and one-line exit-2 errors without tracebacks."""

import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "tests" / "data" / "original_configs"


def _run(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def _assert_usage_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    "config", ["retinanet_autoaugment.yaml", "retinanet_nasfpn.yaml", "spinenet49_retinanet.yaml"]
)
def test_print_config_shows_overridden_values(config):
    result = _run("--model=retinanet", f"--config_file={CONFIGS / config}", "--print_config")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    expected = yaml.safe_load((CONFIGS / config).read_text())
    assert printed["train"]["total_steps"] == expected["train"]["total_steps"]
    assert (
        printed["train"]["learning_rate"]["learning_rate_steps"]
        == expected["train"]["learning_rate"]["learning_rate_steps"]
    )
    assert printed["type"] == "retinanet"


@pytest.mark.parametrize(
    "config", ["cascade_maskrcnn_effb7_nasfpn_1280.yaml", "maskrcnn_resnet50_1024_copy_paste.yaml"]
)
def test_print_config_of_the_original_cascade_experiments(config):
    # Their type key selects cascade_mask_rcnn; printing builds nothing (their EfficientNet,
    # NAS-FPN and copy-paste settings are only parameters here).
    result = _run(f"--config_file={CONFIGS / config}", "--print_config")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    expected = yaml.safe_load((CONFIGS / config).read_text())
    assert printed["type"] == "cascade_mask_rcnn"
    assert printed["roi_sampling"] == dict(
        printed["roi_sampling"], **expected.get("roi_sampling", {})
    )
    assert printed["maskrcnn_parser"]["copy_paste"] is True


def test_print_config_other_models():
    result = _run(
        "--model=mask_rcnn", f"--config_file={CONFIGS / 'spinenet49_mrcnn.yaml'}", "--print_config"
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["maskrcnn_parser"]["output_size"] == [640, 640]
    result = _run(
        f"--config_file={CONFIGS / 'spinenet49_classification.yaml'}",
        "--model=classification",
        "--print_config",
    )
    assert yaml.safe_load(result.stdout)["classification_head"]["aggregation"] == "all"


def test_getting_started_override_is_accepted():
    override = (
        "{ train: { checkpoint: { path: /x/ckpt, prefix: resnet50/ }, "
        "train_file_pattern: /x/train-* }, "
        "eval: { val_json_file: /x/val.json, eval_file_pattern: /x/val-* } }"
    )
    result = _run("--model=retinanet", f"--params_override={override}", "--print_config")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["train"]["checkpoint"] == {
        "path": "/x/ckpt",
        "prefix": "resnet50/",
        "skip_variables_regex": "",
    }
    assert printed["train"]["train_file_pattern"] == "/x/train-*"
    assert printed["eval"]["val_json_file"] == "/x/val.json"


def test_repeated_config_files_then_override(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("type: retinanet\ntrain: {total_steps: 1, train_batch_size: 2}\n")
    b.write_text("train: {total_steps: 3}\n")
    result = _run(
        f"--config_file={a}",
        f"--config_file={b}",
        "--params_override=train.train_batch_size=16",
        "--print_config",
    )
    printed = yaml.safe_load(result.stdout)
    assert (printed["train"]["total_steps"], printed["train"]["train_batch_size"]) == (3, 16)


def test_model_dir_flag_sets_param():
    result = _run("--model=retinanet", "--model_dir=/tmp/somewhere", "--print_config")
    assert yaml.safe_load(result.stdout)["model_dir"] == "/tmp/somewhere"


def test_unknown_override_key(tmp_path):
    _assert_usage_error(
        _run("--model=retinanet", "--params_override=train.totl_steps=3", "--print_config"),
        "train.totl_steps",
        "did you mean 'train.total_steps'",
    )


def test_unknown_key_in_config_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("retinanet_head:\n  num_filter: 3\n")
    _assert_usage_error(
        _run("--model=retinanet", f"--config_file={path}", "--print_config"),
        str(path),
        "retinanet_head.num_filter",
        "retinanet_head.num_filters",
    )


def test_wrong_type(tmp_path):
    _assert_usage_error(
        _run(
            "--model=retinanet", "--params_override={train: {total_steps: ten}}", "--print_config"
        ),
        "train.total_steps",
        "int",
        "str",
    )


def test_missing_config_file():
    _assert_usage_error(
        _run("--model=retinanet", "--config_file=/no/such/file.yaml", "--print_config"),
        "/no/such/file.yaml",
    )


def test_invalid_yaml_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train: {total_steps: 3\n")
    _assert_usage_error(
        _run("--model=retinanet", f"--config_file={path}", "--print_config"), str(path), "line"
    )


def test_unknown_flag_suggests():
    _assert_usage_error(_run("--modle=retinanet"), "--modle", "--model")


def test_bad_flag_value():
    _assert_usage_error(_run("--model=yolo", "--print_config"), "yolo")
    _assert_usage_error(_run("--model=retinanet", "--mode=fit"), "fit")
    _assert_usage_error(_run("--model=retinanet", "--num_cores=zero"), "zero")


def test_no_model():
    _assert_usage_error(_run("--print_config"), "--model")


def test_restriction_violation():
    _assert_usage_error(
        _run(
            "--model=retinanet",
            "--params_override=retinanet_parser.unmatched_threshold=0.7",
            "--print_config",
        ),
        "retinanet_parser.unmatched_threshold=0.7",
        "retinanet_parser.match_threshold=0.5",
    )


def test_train_needs_model_dir():
    _assert_usage_error(_run("--model=retinanet", "--mode=train"), "--model_dir")


def test_tpu_strategy_needs_tpu():
    _assert_usage_error(
        _run("--model=retinanet", "--mode=train", "--model_dir=/tmp/x", "--strategy_type=tpu"),
        "--tpu",
    )


def test_every_configured_model_has_a_model_fn():
    from detection.configs import factory as config_factory
    from detection.model_fns import factory as model_fn_factory

    assert sorted(model_fn_factory._MODEL_FNS) == sorted(config_factory.MODELS)


def test_eval_after_training_needs_train_mode(tmp_path):
    _assert_usage_error(
        _run(
            "--model=retinanet", "--mode=eval", f"--model_dir={tmp_path}", "--eval_after_training"
        ),
        "--eval_after_training",
        "--mode=eval",
    )
