"""SavedModel export end to end: each input type served by a process that imports only
TensorFlow reproduces the in-process eval predictions of the 8 val images; mixed image sizes in
one batch, an undecodable image, the output flags, and the tool's bad inputs.

The four SavedModels are written once per session (tests/serving/conftest.py, one of them by
the command line); one subprocess serves every request.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from detection.core.modes import PREDICT
from detection.ops import boxes as box_ops
from detection.serving import input_types, preprocessing
from detection.serving import module as serving_module
from detection.serving.outputs import OutputOptions
from detection.tools import export_saved_model

NETWORK_SIZE = (96, 96)
CLIENT = os.path.join(os.path.dirname(__file__), "serving_client.py")


def _val_records(tiny_shapes):
    files = sorted(tf.io.gfile.glob(tiny_shapes["val_file_pattern"]))
    return [r.numpy() for r in tf.data.TFRecordDataset(files)]


def _image_of(record):
    encoded = input_types.encoded_image_of_example(tf.constant(record))
    return encoded.numpy(), input_types.decode_image(encoded).numpy()


def _source_id(record):
    example = tf.train.Example.FromString(record)
    return int(example.features.feature["image/source_id"].bytes_list.value[0])


def _mixed_images(tiny_shapes):
    """A 64 x 64 val image and a 48 x 80 one (PNG), served in one image_bytes batch."""
    records = _val_records(tiny_shapes)
    _, first = _image_of(records[0])
    _, second = _image_of(records[1])
    wide = np.asarray(Image.fromarray(second).resize((80, 48)))
    return [first, wide]


@pytest.fixture(scope="module")
def served(exports, tiny_model, tiny_shapes, tmp_path_factory):
    """Runs the serving client once; returns its results and the inputs it was given."""
    root = tmp_path_factory.mktemp("requests")
    records = _val_records(tiny_shapes)
    decoded = [_image_of(r) for r in records]
    requests = []

    def save_files(name, blobs):
        paths = []
        for i, blob in enumerate(blobs):
            paths.append(str(root / f"{name}-{i}"))
            with open(paths[-1], "wb") as f:
                f.write(blob)
        return paths

    def save_array(name, array):
        np.save(root / f"{name}.npy", array)
        return str(root / f"{name}.npy")

    # raw_image_tensor takes the eval pipeline's own network inputs (its source ids' order).
    raw = tiny_model["features"]["images"].numpy()
    requests.append(("raw_image_tensor", save_array("raw", raw)))
    requests.append(("image_tensor", save_array("uint8", np.stack([d[1] for d in decoded]))))
    requests.append(("image_bytes", save_files("bytes", [d[0] for d in decoded])))
    requests.append(("tf_example", save_files("example", records)))
    mixed = []
    for image in _mixed_images(tiny_shapes):
        buffer = root / f"mixed-{len(mixed)}.png"
        Image.fromarray(image).save(buffer)
        mixed.append(str(buffer))
    requests_json = [
        {"name": name, "saved_model_dir": exports[name], "inputs": inputs}
        for name, inputs in requests
    ]
    requests_json.append(
        {"name": "mixed", "saved_model_dir": exports["image_bytes"], "inputs": mixed}
    )
    requests_json.append(
        {
            "name": "garbage",
            "saved_model_dir": exports["image_bytes"],
            "inputs": save_files("garbage", [b"this is not an image"]),
        }
    )
    with open(root / "requests.json", "w", encoding="utf-8") as f:
        json.dump(requests_json, f)
    result = subprocess.run(
        [sys.executable, CLIENT, str(root / "requests.json"), str(root / "results.npz")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(root / "results.npz") as data:
        outputs = {key: data[key] for key in data.files}
    return {"outputs": outputs, "source_ids": [_source_id(r) for r in records]}


def _reference_in_order(tiny_model, source_ids):
    """The eval predictions reordered to `source_ids`."""
    reference = tiny_model["reference"]
    order = [list(reference["source_id"]).index(s) for s in source_ids]
    return {key: value[order] for key, value in reference.items()}


@pytest.mark.parametrize(
    "input_type", ["raw_image_tensor", "image_tensor", "image_bytes", "tf_example"]
)
def test_saved_model_reproduces_eval_predictions(input_type, served, tiny_model):
    outputs = {
        key.split("/", 1)[1]: value
        for key, value in served["outputs"].items()
        if key.startswith(input_type + "/")
    }
    if input_type == "raw_image_tensor":
        # Raw inputs are the eval network inputs; their "original" image is that input.
        expected = tiny_model["reference"]
        expected_boxes = expected["detection_boxes"]
        identity = [[96, 96], [96, 96], [1, 1], [0, 0]]
        np.testing.assert_array_equal(outputs["image_info"], np.tile(identity, (8, 1, 1)))
    else:
        expected = _reference_in_order(tiny_model, served["source_ids"])
        expected_boxes = expected["original_boxes"]
        np.testing.assert_allclose(outputs["image_info"], expected["image_info"], rtol=1e-6)
    assert outputs["num_detections"].dtype == np.int32
    np.testing.assert_array_equal(outputs["num_detections"], expected["num_detections"])
    assert np.all(outputs["num_detections"] == 10)
    np.testing.assert_array_equal(outputs["detection_classes"], expected["detection_classes"])
    np.testing.assert_allclose(outputs["detection_scores"], expected["detection_scores"], atol=1e-4)
    np.testing.assert_allclose(outputs["detection_boxes"], expected_boxes, atol=1e-3)
    # Distinct scores: the order of tied detections would be meaningless to compare.
    assert all(len(np.unique(row)) == 10 for row in outputs["detection_scores"])


def _in_process(tiny_model, images):
    """The model fn on `preprocessing.detection_image` of each image, boxes in original pixels."""
    prepared = [preprocessing.detection_image(tf.constant(i), NETWORK_SIZE) for i in images]
    features = {
        "images": tf.stack([p[0] for p in prepared]),
        "image_info": tf.stack([p[1] for p in prepared]),
        "source_ids": tf.zeros([len(images)], tf.int64),
    }
    predictions = tiny_model["model_fn"](tiny_model["model"], features, None, PREDICT)
    predictions = {k: v.numpy() for k, v in predictions["predictions"].items()}
    predictions["original_boxes"] = box_ops.boxes_to_original_pixels(
        predictions["detection_boxes"], features["image_info"].numpy()
    )
    return predictions


def test_one_batch_of_images_of_two_sizes(served, tiny_model, tiny_shapes):
    outputs = {k[len("mixed/") :]: v for k, v in served["outputs"].items() if "mixed/" in k}
    expected = _in_process(tiny_model, _mixed_images(tiny_shapes))
    # The 48 x 80 image: scaled by 96 / 80 to 58 x 96 (rounded), padded to 96 x 96.
    np.testing.assert_allclose(
        outputs["image_info"][1], [[48, 80], [58, 96], [58 / 48, 96 / 80], [0, 0]], rtol=1e-6
    )
    np.testing.assert_array_equal(outputs["detection_classes"], expected["detection_classes"])
    np.testing.assert_allclose(outputs["detection_scores"], expected["detection_scores"], atol=1e-4)
    np.testing.assert_allclose(outputs["detection_boxes"], expected["original_boxes"], atol=1e-3)
    # Each image's boxes stay inside its own original size.
    assert np.all(outputs["detection_boxes"][1][:, [0, 2]] <= 48)
    assert np.all(outputs["detection_boxes"][1][:, [1, 3]] <= 80)


def test_undecodable_image_is_a_tensorflow_error_at_serving_time(served):
    error = str(served["outputs"]["garbage/error"])
    assert error.startswith("InvalidArgumentError: ")
    assert "Unknown image file format" in error
    assert "DecodeImage" in error  # names the op that failed


def test_output_flags_normalize_boxes_and_cast_counts(tiny_model):
    spec = input_types.resolve_input_spec("image_tensor", 2, (48, 80), NETWORK_SIZE)
    options = OutputOptions(
        output_image_info=False,
        output_normalized_coordinates=True,
        cast_num_detections_to_float=True,
    )
    module = serving_module.ServingModule(
        tiny_model["model_fn"], tiny_model["model"], "retinanet", spec, NETWORK_SIZE, options
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 48, 80, 3), dtype=np.uint8)
    outputs = module.concrete_function()(tf.constant(images))
    assert "image_info" not in outputs
    assert outputs["num_detections"].dtype == tf.float32
    expected = _in_process(tiny_model, list(images))
    np.testing.assert_allclose(
        outputs["detection_boxes"].numpy(),
        expected["original_boxes"] / [48, 80, 48, 80],
        atol=1e-5,
    )
    np.testing.assert_array_equal(outputs["num_detections"].numpy(), expected["num_detections"])


def _export_main(tiny_model, tmp_path, *flags):
    return export_saved_model.main(
        [
            f"--config_file={tiny_model['config_file']}",
            f"--checkpoint_path={tiny_model['checkpoint']}",
            f"--export_dir={tmp_path / 'out'}",
            *flags,
        ]
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--checkpoint_path=/nonexistent/ckpt-3"],
            "/nonexistent/ckpt-3 is neither a directory nor a checkpoint "
            "(/nonexistent/ckpt-3.index does not exist)",
        ),
        (["--input_type=jpeg"], "argument --input_type: invalid choice: 'jpeg'"),
        (
            ["--input_type=image_tensor", "--input_image_size=640x640"],
            "--input_image_size='640x640': expected two positive integers 'height,width' or "
            "'None,None'",
        ),
        (["--batch_size=0"], "--batch_size='0': expected a positive integer or None"),
        (
            ["--input_type=raw_image_tensor", "--input_image_size=128,96"],
            "--input_image_size=128,96: raw_image_tensor images are not resized",
        ),
        (
            ["--input_type=tf_example", "--input_image_size=640,640"],
            "--input_image_size=640,640 with --input_type=tf_example",
        ),
        (
            ["--output_full_image_masks"],
            "--output_full_image_masks: this model returns no detection_masks",
        ),
    ],
)
def test_bad_inputs_exit_2_with_one_line(tiny_model, tmp_path, capsys, flags, message):
    assert _export_main(tiny_model, tmp_path, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"export_saved_model: error: {message}")
    assert not (tmp_path / "out").exists()
