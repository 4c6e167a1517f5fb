"""TFLite export (float32 matches the SavedModel; full-integer calibrates from TFRecords and
runs), evaluate_model (a SavedModel reproduces the in-process eval AP; TFLite results JSON) and
inference on exported models, on the tiny random-weight RetinaNet of conftest.py."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools.coco import COCO

from detection.evaluation import factory as evaluation_factory
from detection.serving import loaded
from detection.tools import evaluate_model, export_tflite_model, inference, visualize


def _records(tiny_shapes):
    files = sorted(tf.io.gfile.glob(tiny_shapes["val_file_pattern"]))
    return [r.numpy() for r in tf.data.TFRecordDataset(files)]


@pytest.fixture(scope="module")
def tflite_models(tiny_model, tiny_shapes, tmp_path_factory):
    """{quantization: .tflite path}, written by export_tflite_model.main."""
    root = tmp_path_factory.mktemp("tflite")
    paths = {}
    for quantization in ("float32", "full_integer"):
        code = export_tflite_model.main(
            [
                f"--config_file={tiny_model['config_file']}",
                f"--checkpoint_path={tiny_model['checkpoint']}",
                f"--output_dir={root / quantization}",
                f"--quantization={quantization}",
                f"--representative_file_pattern={tiny_shapes['val_file_pattern']}",
                "--num_calibration_images=4",
            ]
        )
        assert code == 0
        paths[quantization] = str(root / quantization / "model.tflite")
    return paths


@pytest.fixture(scope="module")
def saved_model_results(exports, tiny_shapes):
    examples = [loaded.Example(serialized=r) for r in _records(tiny_shapes)]
    return loaded.load(exports["image_bytes"]).predict(examples)


def test_tflite_float_matches_the_saved_model(tflite_models, saved_model_results, tiny_shapes):
    model = loaded.load(tflite_models["float32"])
    assert (model.input_type, model.batch_size, model.image_size) == (
        "raw_image_tensor",
        1,
        (96, 96),
    )
    results = model.predict([loaded.Example(serialized=r) for r in _records(tiny_shapes)])
    for got, expected in zip(results, saved_model_results):
        assert len(got["scores"]) == len(expected["scores"]) == 10
        np.testing.assert_array_equal(got["classes"][:5], expected["classes"][:5])
        np.testing.assert_allclose(got["boxes"][:5], expected["boxes"][:5], atol=1.0)
        np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-3)


def test_tflite_full_integer_has_int8_weights_and_runs(tflite_models, tiny_shapes):
    interpreter = loaded.tflite_interpreter(tflite_models["full_integer"])
    dtypes = [detail["dtype"] for detail in interpreter.get_tensor_details()]
    assert dtypes.count(np.int8) > 20  # conv weights and activations
    with open(os.path.join(os.path.dirname(tflite_models["full_integer"]), "export.json")) as f:
        assert json.load(f)["quantization"] == "full_integer"
    results = loaded.load(tflite_models["full_integer"]).predict(
        [loaded.Example(serialized=r) for r in _records(tiny_shapes)[:2]]
    )
    for result in results:
        assert len(result["scores"]) == 10
        assert set(result["classes"]) <= {1, 2, 3}
        assert np.all(result["boxes"] >= -1e-3) and np.all(result["boxes"] <= 64 + 1e-3)
        assert np.all(np.diff(result["scores"]) <= 1e-6)  # best first


def test_evaluate_model_reproduces_the_eval_metrics(exports, tiny_model):
    evaluator = evaluation_factory.evaluator_from_params(tiny_model["params"])
    groundtruths = {k: v.numpy() for k, v in tiny_model["labels"]["groundtruths"].items()}
    evaluator.update(dict(tiny_model["reference"]), groundtruths)
    expected = evaluator.evaluate()
    metrics = evaluate_model.evaluate(tiny_model["params"], loaded.load(exports["tf_example"]))
    assert expected["AP"] > 0  # random weights, but some boxes hit
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-6), name


def test_evaluate_model_main_on_tflite_writes_coco_results(
    tflite_models, tiny_model, tmp_path, capsys
):
    out = tmp_path / "detections.json"
    code = evaluate_model.main(
        [
            f"--config_file={tiny_model['config_file']}",
            f"--params_override={tiny_model['override']}",
            f"--tflite_file={tflite_models['float32']}",
            f"--predictions_path={out}",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "ran the model on 8 images" in printed
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in printed
    coco = COCO(tiny_model["params"].eval.val_json_file)
    results = coco.loadRes(str(out))
    assert len(results.anns) == 8 * 10


def test_evaluate_model_bad_inputs_exit_2(tiny_model, tmp_path, capsys):
    cases = [
        (
            [f"--saved_model_dir={tmp_path}"],
            f"evaluate_model: error: {tmp_path} is a directory without saved_model.pb",
        ),
        (
            [f"--tflite_file={tmp_path / 'model.tflite'}"],
            f"evaluate_model: error: no SavedModel directory or .tflite file at "
            f"{tmp_path / 'model.tflite'}",
        ),
    ]
    for flags, message in cases:
        code = evaluate_model.main(
            [
                f"--config_file={tiny_model['config_file']}",
                f"--params_override={tiny_model['override']}",
            ]
            + flags
        )
        assert code == 2
        assert capsys.readouterr().err.strip() == message


def test_inference_on_a_saved_model_draws_and_writes_json(exports, tiny_shapes, tmp_path, capsys):
    files = sorted(glob.glob(os.path.join(tiny_shapes["val_image_dir"], "*.jpg")))[:2]
    out_json = tmp_path / "out.json"
    code = inference.main(
        [
            f"--saved_model_dir={exports['tf_example']}",
            f"--image_file_pattern={tiny_shapes['val_image_dir']}/00000[12].jpg",
            f"--output_dir={tmp_path / 'drawn'}",
            "--min_score=0.5",
            f"--output_json={out_json}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    model = loaded.load(exports["tf_example"])
    written = json.loads(out_json.read_text())
    assert len(written) == 2 * 10
    for index, path in enumerate(files):
        image = inference.read_image(path)
        result = model.predict([loaded.Example(image=image)])[0]
        expected = visualize.draw_detections(
            image, result["boxes"], result["classes"], result["scores"], {}, 0.5
        )
        stem = os.path.splitext(os.path.basename(path))[0]
        drawn = np.asarray(Image.open(tmp_path / "drawn" / f"{stem}.png"))
        np.testing.assert_array_equal(drawn, expected)
        mine = [r for r in written if r["file_name"] == os.path.basename(path)]
        assert [r["image_id"] for r in mine] == [int(stem)] * 10
        x, y, w, h = mine[0]["bbox"]
        np.testing.assert_allclose([y, x, y + h, x + w], result["boxes"][0], atol=1e-4)
