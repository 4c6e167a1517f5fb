"""TfExampleDecoder / TfExampleClassificationDecoder on hand-built tf.Examples."""

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from detection.dataloader.tf_example_decoder import TfExampleClassificationDecoder, TfExampleDecoder


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _image(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _example(feature_values):
    feature = {}
    for key, values in feature_values.items():
        if isinstance(values[0], bytes):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        elif isinstance(values[0], float):
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _full_example(image, masks):
    return _example(
        {
            "image/encoded": [_png(image)],
            "image/source_id": [b"4242"],
            "image/height": [image.shape[0]],
            "image/width": [image.shape[1]],
            "image/object/bbox/xmin": [0.1, 0.5],
            "image/object/bbox/xmax": [0.4, 1.0],
            "image/object/bbox/ymin": [0.2, 0.0],
            "image/object/bbox/ymax": [0.6, 0.25],
            "image/object/class/label": [3, 1],
            "image/object/is_crowd": [0, 1],
            "image/object/area": [12.5, 99.0],
            "image/object/mask": [_png(m) for m in masks],
        }
    )


def test_decode_all_fields():
    image = _image(32, 48, seed=0)
    masks = np.zeros((2, 32, 48), np.uint8)
    masks[0, 3:9, 5:20] = 1
    masks[1, 10:30, 0:7] = 255  # some converters store 255 as foreground
    out = TfExampleDecoder(include_mask=True).decode(tf.constant(_full_example(image, masks)))
    np.testing.assert_array_equal(out["image"].numpy(), image)
    assert out["image"].dtype == tf.uint8
    assert out["source_id"].dtype == tf.int64 and int(out["source_id"]) == 4242
    assert int(out["height"]) == 32 and int(out["width"]) == 48
    np.testing.assert_allclose(
        out["groundtruth_boxes"].numpy(), [[0.2, 0.1, 0.6, 0.4], [0.0, 0.5, 0.25, 1.0]], rtol=1e-6
    )
    assert out["groundtruth_classes"].dtype == tf.int64
    np.testing.assert_array_equal(out["groundtruth_classes"].numpy(), [3, 1])
    np.testing.assert_array_equal(out["groundtruth_is_crowd"].numpy(), [False, True])
    np.testing.assert_allclose(out["groundtruth_area"].numpy(), [12.5, 99.0])
    assert out["groundtruth_instance_masks"].dtype == tf.float32
    np.testing.assert_array_equal(
        out["groundtruth_instance_masks"].numpy(), (masks > 0).astype(np.float32)
    )
    assert out["groundtruth_instance_masks_png"].shape == (2,)
    assert "groundtruth_instance_masks" not in TfExampleDecoder().decode(
        tf.constant(_full_example(image, masks))
    )


def test_missing_optional_keys_get_defaults():
    image = _image(20, 40, seed=1)
    serialized = _example(
        {
            "image/encoded": [_png(image)],
            "image/source_id": [b"7"],
            "image/object/bbox/xmin": [0.25],
            "image/object/bbox/xmax": [0.75],
            "image/object/bbox/ymin": [0.1],
            "image/object/bbox/ymax": [0.6],
            "image/object/class/label": [2],
        }
    )
    out = TfExampleDecoder().decode(tf.constant(serialized))
    assert int(out["height"]) == 20 and int(out["width"]) == 40  # from the image
    np.testing.assert_array_equal(out["groundtruth_is_crowd"].numpy(), [False])
    # Box area in pixels: (0.6 - 0.1) * 20 * (0.75 - 0.25) * 40.
    np.testing.assert_allclose(out["groundtruth_area"].numpy(), [200.0], rtol=1e-5)


def test_image_without_instances():
    image = _image(16, 24, seed=2)
    serialized = _example({"image/encoded": [_png(image)], "image/source_id": [b"1"]})
    out = TfExampleDecoder(include_mask=True).decode(tf.constant(serialized))
    assert out["groundtruth_boxes"].shape == (0, 4)
    assert out["groundtruth_classes"].shape == (0,)
    assert out["groundtruth_is_crowd"].shape == (0,)
    assert out["groundtruth_area"].shape == (0,)
    assert out["groundtruth_instance_masks"].shape == (0, 16, 24)


def test_regenerate_source_id_hashes_the_image_bytes():
    encoded = [_png(_image(8, 8, seed=s)) for s in (3, 4)]
    decoder = TfExampleDecoder(regenerate_source_id=True)
    ids = [
        int(decoder.decode(tf.constant(_example({"image/encoded": [e]})))["source_id"])
        for e in encoded
    ]
    expected = [int(tf.strings.to_hash_bucket_fast(e, 2**63 - 1)) for e in encoded]
    assert ids == expected and ids[0] != ids[1] and min(ids) >= 0


def test_missing_source_id_is_an_error_naming_the_key():
    serialized = _example({"image/encoded": [_png(_image(8, 8, seed=5))]})
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/source_id"):
        TfExampleDecoder().decode(tf.constant(serialized))


def test_decode_inside_dataset_map():
    image = _image(32, 48, seed=6)
    masks = np.ones((2, 32, 48), np.uint8)
    dataset = tf.data.Dataset.from_tensors(tf.constant(_full_example(image, masks))).map(
        TfExampleDecoder(include_mask=True).decode
    )
    spec = dataset.element_spec
    assert spec["image"].shape.as_list() == [None, None, 3]
    assert spec["groundtruth_boxes"].shape.as_list() == [None, 4]
    out = next(iter(dataset))
    assert int(out["source_id"]) == 4242
    assert out["groundtruth_instance_masks"].shape == (2, 32, 48)


def test_classification_decoder():
    image = _image(10, 12, seed=7)
    jpeg = tf.io.encode_jpeg(image).numpy()
    serialized = _example({"image/encoded": [jpeg], "image/class/label": [417]})
    out = TfExampleClassificationDecoder().decode(tf.constant(serialized))
    np.testing.assert_array_equal(out["image"].numpy(), tf.io.decode_jpeg(jpeg).numpy())
    assert out["label"].dtype == tf.int64 and int(out["label"]) == 417
