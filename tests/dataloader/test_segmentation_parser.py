"""Segmentation parser: label maps stay aligned with their images through flip, scale jitter and
crop (checked against NumPy nearest-neighbour resizing), padding is the ignore label, bad label
values and oversized eval images fail naming the key."""

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from detection.configs import factory as config_factory
from detection.dataloader import factory, preprocess_ops
from detection.dataloader.segmentation_parser import SegmentationParser

IGNORE = 255
MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255
# One colour per class, far apart, so that the class of an image pixel can be read back.
COLORS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)


def _example(image, label_map):
    def png(array):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()

    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png(image)])),
        "image/segmentation/class/encoded": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[png(label_map)])
        ),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _blocky_label_map(height, width, seed=0):
    """Class ids constant over 8x8 blocks (some unlabelled), so nearest resizing is exact
    away from block edges."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 4, (height // 8 + 1, width // 8 + 1)).astype(np.uint8)
    blocks[0, 1] = IGNORE
    return np.kron(blocks, np.ones((8, 8), np.uint8))[:height, :width]


def _image_of(label_map):
    return COLORS[np.where(label_map == IGNORE, 0, label_map)]


def _nearest_resize(array, size):
    """NumPy nearest neighbour with half-pixel centres, as TF2's tf.image.resize 'nearest'
    computes it (in float32: source index = floor((i + 0.5) * in / out))."""

    def source(out, length):
        scale = np.float32(length) / np.float32(out)
        index = np.floor((np.arange(out, dtype=np.float32) + np.float32(0.5)) * scale)
        return np.minimum(index.astype(int), length - 1)

    return array[source(size[0], array.shape[0])][:, source(size[1], array.shape[1])]


def _expected_label_map(label_map, image_info, output_size, flipped, pad=IGNORE):
    if flipped:
        label_map = label_map[:, ::-1]
    original, _, scale, offset = image_info
    scaled = np.round(original * scale).astype(int)
    resized = _nearest_resize(label_map, scaled)
    y, x = offset.astype(int)
    crop = resized[y : y + output_size[0], x : x + output_size[1]]
    out = np.full(output_size, pad, np.int32)
    out[: crop.shape[0], : crop.shape[1]] = crop
    return out


def test_training_label_maps_follow_flip_jitter_and_crop():
    label_map = _blocky_label_map(48, 72)
    record = _example(_image_of(label_map), label_map)
    parser = SegmentationParser([64, 64], 4, is_training=True, aug_scale_min=0.5, aug_scale_max=2.0)
    flips, padded, cropped = 0, 0, 0
    for _ in range(30):
        features, labels = parser(tf.constant(record))
        got = labels["label_map"].numpy()
        info = features["image_info"].numpy()
        assert got.shape == (64, 64) and got.dtype == np.int32
        matches = [
            np.array_equal(got, _expected_label_map(label_map, info, [64, 64], flipped))
            for flipped in (False, True)
        ]
        assert any(matches), info
        flips += matches[1] and not matches[0]
        padded += np.any(got == IGNORE) and info[1].min() < 64
        cropped += info[3].max() > 0
        # The image pixels carry the colour of their label wherever the label map is a class
        # (bilinear image resizing blurs block edges, so most pixels, not all).
        image = features["images"].numpy() * STD + MEAN
        labelled = got != IGNORE
        colour_class = np.argmin(
            np.linalg.norm(image[..., None, :] - COLORS[None, None], axis=-1), axis=-1
        )
        assert np.mean(colour_class[labelled] == got[labelled]) > 0.9
    assert 0 < flips < 30 and padded > 0 and cropped > 0


def test_label_map_resize_equals_numpy_for_given_geometry():
    label_map = np.random.default_rng(1).integers(0, 5, (37, 53)).astype(np.int32)
    for scale, offset in ((0.7, (0, 0)), (1.9, (11, 30)), (1.0, (0, 0))):
        scaled = np.round(np.array([37.0, 53.0]) * scale)
        info = np.stack(
            [[37.0, 53.0], np.minimum(scaled - offset, 40), scaled / [37.0, 53.0], offset]
        )
        got = preprocess_ops.resize_and_crop_label_map(
            label_map, tf.constant(info, tf.float32), [40, 40], -7
        )
        np.testing.assert_array_equal(
            got.numpy(), _expected_label_map(label_map, info, [40, 40], False, pad=-7)
        )


def _params(path, **parser):
    params = config_factory.config_generator("segmentation")
    params.override(
        {
            "architecture": {"num_classes": 4},
            "train": {"train_file_pattern": path, "train_batch_size": 2},
            "eval": {"eval_file_pattern": path, "eval_batch_size": 2},
            "segmentation_parser": dict({"output_size": [64, 64]}, **parser),
        }
    )
    return params


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("segmentation") / "data.tfrecord")
    label_maps = [
        _blocky_label_map(40, 56, seed=0),
        _blocky_label_map(64, 48, seed=1),
        _blocky_label_map(24, 24, seed=2),
    ]
    with tf.io.TFRecordWriter(path) as writer:
        for label_map in label_maps:
            writer.write(_example(_image_of(label_map), label_map))
    return path, label_maps


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_static_shapes(records, mode):
    dataset = factory.input_fn_from_params(_params(records[0]), mode, deterministic=True)()
    features, labels = dataset.element_spec
    assert features["images"].shape == (2, 64, 64, 3)
    assert features["image_info"].shape == (2, 4, 2)
    assert labels == {"label_map": tf.TensorSpec([2, 64, 64], tf.int32)}


def test_eval_pads_without_resizing(records):
    path, label_maps = records
    dataset = factory.input_fn_from_params(_params(path), "eval", deterministic=True)()
    outputs = [
        (f["images"].numpy(), f["image_info"].numpy(), f["valid"].numpy(), l["label_map"].numpy())
        for f, l in dataset
    ]
    images, infos, valid, maps = (np.concatenate(x) for x in zip(*outputs))
    assert valid.tolist() == [True, True, True, False]
    for i, label_map in enumerate(label_maps):
        h, w = label_map.shape
        expected = np.full((64, 64), IGNORE)
        expected[:h, :w] = label_map
        np.testing.assert_array_equal(maps[i], expected)
        np.testing.assert_allclose(images[i, :h, :w] * STD + MEAN, _image_of(label_map), atol=1e-3)
        np.testing.assert_array_equal(images[i, h:], 0.0)
        np.testing.assert_array_equal(infos[i], [[h, w], [h, w], [1, 1], [0, 0]])


def test_eval_with_resize_eval_fits_output_size(records):
    path, label_maps = records
    dataset = factory.input_fn_from_params(
        _params(path, resize_eval=True), "eval", deterministic=True
    )()
    features, labels = next(iter(dataset))
    info = features["image_info"].numpy()[0]
    np.testing.assert_allclose(info[2], [46 / 40, 64 / 56], rtol=1e-6)  # 40x56 -> 46x64
    np.testing.assert_array_equal(
        labels["label_map"].numpy()[0], _expected_label_map(label_maps[0], info, [64, 64], False)
    )


def test_bad_label_values_and_oversized_eval_images(tmp_path):
    label_map = _blocky_label_map(32, 32)
    label_map[5, 5] = 9
    path = str(tmp_path / "bad.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(_example(_image_of(np.minimum(label_map, 3)), label_map))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="segmentation_parser.ignore_label=255"
    ):
        next(iter(factory.input_fn_from_params(_params(path), "eval")()))
    big = _blocky_label_map(80, 40)
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(_example(_image_of(big), big))
    with pytest.raises(tf.errors.InvalidArgumentError, match="resize_eval"):
        next(iter(factory.input_fn_from_params(_params(path), "eval")()))
