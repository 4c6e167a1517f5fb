"""TFLite export (float32 matches the SavedModel; full-integer calibrates from TFRecords and
runs; a model that fails to run is not written), evaluate_model (a SavedModel feeds the
evaluator the eval detections; TFLite results JSON) and inference on exported models, on the
tiny random-weight RetinaNet of conftest.py."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools.coco import COCO

from detection.evaluation import factory as evaluation_factory
from detection.serving import loaded, tflite
from detection.tools import evaluate_model, export_tflite_model, inference, visualize


def _records(tiny_shapes):
    files = sorted(tf.io.gfile.glob(tiny_shapes["val_file_pattern"]))
    return [r.numpy() for r in tf.data.TFRecordDataset(files)]


def _export_tflite(tiny_model, tiny_shapes, output_dir, quantization):
    return export_tflite_model.main(
        [
            f"--config_file={tiny_model['config_file']}",
            f"--checkpoint_path={tiny_model['checkpoint']}",
            f"--output_dir={output_dir}",
            f"--quantization={quantization}",
            f"--representative_file_pattern={tiny_shapes['val_file_pattern']}",
            "--num_calibration_images=4",
        ]
    )


@pytest.fixture(scope="module")
def tflite_models(tiny_model, tiny_shapes, tmp_path_factory):
    """{quantization: .tflite path}, written by export_tflite_model.main."""
    root = tmp_path_factory.mktemp("tflite")
    assert _export_tflite(tiny_model, tiny_shapes, root / "float32", "float32") == 0
    return {"float32": str(root / "float32" / "model.tflite")}


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


def test_tflite_full_integer_writes_a_model_that_runs(tiny_model, tiny_shapes, tmp_path, capsys):
    # TFLite quantizes the NMS while-loop body to int8 whatever the op denylist says; an int8
    # union can round to 0, so that loop must hold no DIV (it failed at run time before).
    code = _export_tflite(tiny_model, tiny_shapes, tmp_path / "int8", "full_integer")
    assert code == 0, capsys.readouterr().err
    assert "test-run on 4 input batch(es)" in capsys.readouterr().out
    path = tmp_path / "int8" / "model.tflite"
    interpreter = loaded.tflite_interpreter(str(path))
    dtypes = [detail["dtype"] for detail in interpreter.get_tensor_details()]
    assert dtypes.count(np.int8) > 10  # convolution weights and activations
    assert "DIV" not in tflite.op_names(path.read_bytes())
    results = loaded.load(str(path)).predict(
        [loaded.Example(serialized=r) for r in _records(tiny_shapes)]
    )
    assert len(results) == 8
    for result in results:
        assert len(result["scores"]) == 10
        boxes = np.asarray(result["boxes"])
        assert np.all(np.isfinite(boxes)) and np.all((boxes >= 0) & (boxes <= 64))


def test_tflite_op_names_include_loop_bodies():
    # The interpreter's op list covers the main subgraph only; DIV here is in the loop body.
    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
    def loop(x):
        return tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y / (y + 1.0)), (0, x))[1]

    content = tf.lite.TFLiteConverter.from_concrete_functions(
        [loop.get_concrete_function()], loop
    ).convert()
    assert tflite.op_names(content) == ["ADD", "DIV", "LESS", "WHILE"]


def test_tflite_export_writes_nothing_when_the_model_fails_to_run(
    tiny_model, tiny_shapes, tmp_path, capsys, monkeypatch
):
    # A model that fails on one calibration image only (as a zero int8 union would) is caught.
    seen = []
    real_invoke = tf.lite.Interpreter.get_signature_runner

    def failing_runner(self, *args, **kwargs):
        runner = real_invoke(self, *args, **kwargs)

        class Runner:
            def get_input_details(self):
                return runner.get_input_details()

            def __call__(self, **inputs):
                seen.append(1)
                if len(seen) == 3:
                    raise RuntimeError("div.cc:242 data[i] != 0 was not true.\nNode 68 (DIV)")
                return runner(**inputs)

        return Runner()

    monkeypatch.setattr(tf.lite.Interpreter, "get_signature_runner", failing_runner)
    code = _export_tflite(tiny_model, tiny_shapes, tmp_path / "int8", "full_integer")
    assert code == 2
    assert len(seen) == 3
    err = capsys.readouterr().err.strip()
    assert err == (
        "export_tflite_model: error: the full_integer model does not run in TFLite: "
        "div.cc:242 data[i] != 0 was not true."
    )
    assert not (tmp_path / "int8" / "model.tflite").exists()


def test_evaluate_model_reproduces_the_eval_detections_and_metrics(exports, tiny_model, tmp_path):
    evaluator = evaluation_factory.evaluator_from_params(tiny_model["params"])
    groundtruths = {k: v.numpy() for k, v in tiny_model["labels"]["groundtruths"].items()}
    evaluator.update(dict(tiny_model["reference"]), groundtruths)
    expected = evaluator.evaluate()
    evaluator.dump_predictions(str(tmp_path / "expected.json"))
    metrics = evaluate_model.evaluate(
        tiny_model["params"],
        loaded.load(exports["tf_example"]),
        predictions_path=str(tmp_path / "got.json"),
    )
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-6), name
    # Random weights score AP 0, so compare what the evaluator was fed: every detection.
    key = lambda r: (r["image_id"], -r["score"])  # noqa: E731
    want = sorted(json.loads((tmp_path / "expected.json").read_text()), key=key)
    got = sorted(json.loads((tmp_path / "got.json").read_text()), key=key)
    assert len(got) == len(want) == 8 * 10
    for g, w in zip(got, want):
        assert (g["image_id"], g["category_id"]) == (w["image_id"], w["category_id"])
        assert g["score"] == pytest.approx(w["score"], abs=1e-4)
        np.testing.assert_allclose(g["bbox"], w["bbox"], atol=2e-3)


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
