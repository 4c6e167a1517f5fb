"""Classification parser: static shapes, eval centre crop against NumPy, crop windows, flip."""

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from detection.configs import factory as config_factory
from detection.dataloader import factory
from detection.dataloader import preprocess_ops
from detection.dataloader.classification_parser import ClassificationParser
from detection.hyperparameters import ParamsError

SIZES = [(48, 80), (80, 48), (64, 64), (40, 100), (72, 56), (50, 50)]
LABELS = [0, 4, 2, 3, 1, 4]


def _example(encoded, label):
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
        )
    ).SerializeToString()


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A TFRecord of 6 random JPEGs of several sizes; returns (path, [encoded jpeg])."""
    rng = np.random.default_rng(0)
    path = str(tmp_path_factory.mktemp("classification") / "images.tfrecord")
    encoded = []
    with tf.io.TFRecordWriter(path) as writer:
        for (h, w), label in zip(SIZES, LABELS):
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            encoded.append(tf.io.encode_jpeg(image).numpy())
            writer.write(_example(encoded[-1], label))
    return path, encoded


def _params(path, num_classes=5, **parser):
    params = config_factory.config_generator("classification")
    params.override(
        {
            "architecture": {"num_classes": num_classes},
            "train": {"train_file_pattern": path, "train_batch_size": 2},
            "eval": {"eval_file_pattern": path, "eval_batch_size": 4},
            "classification_parser": dict({"output_size": [64, 64]}, **parser),
        }
    )
    return params


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_element_has_a_static_shape(records, mode):
    dataset = factory.input_fn_from_params(_params(records[0]), mode, deterministic=True)()
    specs = tf.nest.flatten(dataset.element_spec)
    assert specs and all(spec.shape.is_fully_defined() for spec in specs), dataset.element_spec
    features, labels = dataset.element_spec
    batch = 2 if mode == "train" else 4
    assert features["images"].shape == (batch, 64, 64, 3)
    assert features["images"].dtype == tf.float32
    classes = tf.TensorSpec([batch], tf.int32)
    if mode == "train":
        assert labels == {"classes": classes}
    else:
        assert labels == {"classes": classes, "groundtruths": {"classes": classes}}


def test_eval_is_the_padded_centre_crop_resized(records):
    path, encoded = records
    dataset = factory.input_fn_from_params(_params(path), "eval", deterministic=True)()
    images, classes, valid = [], [], []
    for features, labels in dataset:
        images.append(features["images"].numpy())
        classes.append(labels["classes"].numpy())
        np.testing.assert_array_equal(labels["groundtruths"]["classes"], labels["classes"])
        valid.append(features["valid"].numpy())
    images, classes, valid = map(np.concatenate, (images, classes, valid))
    assert valid.tolist() == [True] * 6 + [False] * 2
    assert classes[:6].tolist() == LABELS
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    for i, jpeg in enumerate(encoded):
        image = tf.io.decode_jpeg(jpeg).numpy()
        h, w = image.shape[:2]
        side = int(64 / 96 * min(h, w))
        top, left = (h - side + 1) // 2, (w - side + 1) // 2
        crop = image[top : top + side, left : left + side].astype(np.float32)
        expected = (tf.image.resize(crop, [64, 64]).numpy() - mean) / std
        np.testing.assert_allclose(images[i], expected, atol=1e-4)


def test_random_crop_windows_respect_area_and_aspect_ranges():
    image_size = tf.constant([100, 80])
    windows = [preprocess_ops.random_crop_window(image_size, seed=s) for s in range(1, 201)]
    offsets = np.array([o.numpy() for o, _ in windows])
    sizes = np.array([s.numpy() for _, s in windows])
    assert np.all(offsets >= 0) and np.all(offsets + sizes <= [100, 80])
    areas = sizes.prod(axis=1) / 8000.0
    aspects = sizes[:, 1] / sizes[:, 0]
    # Integer rounding of the window moves area and aspect ratio a little.
    assert areas.min() >= 0.07 and areas.max() <= 1.0
    assert aspects.min() >= 0.75 - 0.05 and aspects.max() <= 4 / 3 + 0.05
    assert areas.min() < 0.3 and areas.max() > 0.7  # the whole range is used
    assert len({tuple(o) for o in offsets}) > 50


def test_center_crop_window_matches_the_standard_formula():
    offset, size = preprocess_ops.center_crop_window(tf.constant([375, 500]), [224, 224])
    side = int(224 / 256 * 375)
    assert size.numpy().tolist() == [side, side]
    assert offset.numpy().tolist() == [(375 - side + 1) // 2, (500 - side + 1) // 2]


def _gradient_png():
    """A 64x64 PNG whose brightness grows from left to right."""
    row = np.linspace(0, 255, 64).astype(np.uint8)
    image = np.repeat(np.broadcast_to(row, (64, 64))[:, :, None], 3, axis=2)
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    return png.getvalue()


@pytest.mark.parametrize("flip", [False, True])
def test_training_crop_keeps_orientation_unless_flipped(records, flip):
    parser = factory.parser_from_params(_params(records[0], aug_rand_hflip=flip), "train")
    dataset = tf.data.Dataset.from_tensors(_example(_gradient_png(), 3)).repeat(40).map(parser)
    increasing, spans = [], []
    for features, labels in dataset:
        image = features["images"].numpy()
        assert labels["classes"].numpy() == 3
        # A horizontal gradient stays one after any crop and resize: columns are constant.
        np.testing.assert_allclose(image, np.broadcast_to(image[:1], image.shape), atol=1e-4)
        increasing.append(image[0, -1, 0] > image[0, 0, 0])
        spans.append(abs(image[0, -1, 0] - image[0, 0, 0]))
    # Random-size crops cover different widths of the gradient.
    assert max(spans) - min(spans) > 0.2 * max(spans), spans
    if flip:
        assert 0 < sum(increasing) < len(increasing)
    else:
        assert all(increasing)


def test_label_outside_num_classes_names_the_key(records):
    dataset = factory.input_fn_from_params(
        _params(records[0], num_classes=4), "eval", deterministic=True
    )()
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/class/label"):
        for _ in dataset:
            pass


def test_augmentation_hook_runs_on_the_decoded_training_image(records):
    def invert(image):
        assert image.dtype == tf.uint8 and image.shape.rank == 3
        return 255 - image

    record = _example(_gradient_png(), 1)
    for is_training, expect_inverted in ((True, True), (False, False)):
        parser = ClassificationParser(
            [64, 64], 5, is_training, aug_rand_hflip=False, autoaugment=invert
        )
        plain = ClassificationParser([64, 64], 5, is_training, aug_rand_hflip=False)
        image = parser(tf.constant(record))[0]["images"].numpy()
        reference = plain(tf.constant(record))[0]["images"].numpy()
        # Training crops are random: compare the direction of the gradient instead of pixels.
        left_brighter = image[0, 0, 0] > image[0, -1, 0]
        assert left_brighter == expect_inverted
        assert (reference[0, 0, 0] > reference[0, -1, 0]) is np.False_


def test_randaugment_from_params_changes_training_images_only():
    # A uniform grey image stays one colour through crop, flip and resize; RandAugment's
    # colour ops (invert, solarize, brightness...) change it in some of the draws.
    grey = tf.io.encode_png(tf.fill([40, 48, 3], tf.constant(128, tf.uint8))).numpy()
    record = tf.constant(_example(grey, 1))
    policy = {"aug_policy": "randaugment", "randaug_num_layers": 2, "randaug_magnitude": 10}
    plain_eval = factory.parser_from_params(_params(""), "eval")(record)[0]["images"]
    augmented_eval = factory.parser_from_params(_params("", **policy), "eval")(record)[0]
    np.testing.assert_array_equal(augmented_eval["images"], plain_eval)
    plain = factory.parser_from_params(_params(""), "train")(record)[0]["images"].numpy()
    assert np.all(plain == plain[0, 0])
    tf.random.set_seed(0)
    parser = factory.parser_from_params(_params("", **policy), "train")
    draws = [parser(record)[0]["images"].numpy() for _ in range(20)]
    changed = [not np.array_equal(image, plain) for image in draws]
    assert 0 < sum(changed) < 20  # some ops (equalize, contrast...) leave it grey


def test_classification_aug_policy_takes_randaugment_only():
    params = _params("", aug_policy="v0")
    with pytest.raises(ParamsError, match="classification_parser.aug_policy='v0'"):
        factory.parser_from_params(params, "train")
