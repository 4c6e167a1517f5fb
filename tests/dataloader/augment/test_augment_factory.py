"""augment.factory: policy names from a params section, the image-only and label-map forms."""

import numpy as np
import pytest
import tensorflow as tf

from detection.dataloader.augment import autoaugment, magnitudes
from detection.dataloader.augment import factory as augment_factory
from detection.hyperparameters import ParamsDict, ParamsError

SHIFT = 8
IGNORE = 255


def _section(policy, **keys):
    return ParamsDict(dict({"aug_policy": policy}, **keys))


def test_randaugment_needs_the_randaug_keys_in_the_section():
    with pytest.raises(ParamsError) as error:
        augment_factory.detection_augmentation_from_params(_section("randaugment"), "s")
    assert "s.aug_policy='randaugment' is not implemented" in str(error.value)
    assert "'v0'" in str(error.value) and "'randaugment'" not in str(error.value).split(";")[1]
    keys = {"randaug_num_layers": 1, "randaug_magnitude": 3}
    assert augment_factory.detection_augmentation_from_params(_section("randaugment", **keys), "s")


def test_negative_randaugment_layers_name_the_keys():
    section = _section("randaugment", randaug_num_layers=-1, randaug_magnitude=3)
    with pytest.raises(ParamsError, match=r"s\.randaug_num_layers=-1"):
        augment_factory.detection_augmentation_from_params(section, "s")


def _shift_policy():
    return autoaugment.DetectionPolicy(
        [[("TranslateX_BBox", 1.0, 10)]],
        constants=magnitudes.Constants(translate_const=float(SHIFT)),
        seed=2,
    )


def test_label_map_moves_with_the_image_and_uncovered_pixels_are_ignored():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, [24, 32, 3]).astype(np.uint8)
    label_map = rng.integers(0, 5, [24, 32]).astype(np.int32)
    label_map[:4] = IGNORE
    augment = tf.function(augment_factory.label_map_augmentation(_shift_policy(), IGNORE))
    shifts = set()
    for _ in range(8):
        out_image, out_labels = augment(tf.constant(image), tf.constant(label_map))
        out_image, out_labels = out_image.numpy(), out_labels.numpy()
        shift = SHIFT if np.array_equal(out_image[:, SHIFT:], image[:, :-SHIFT]) else -SHIFT
        expected = np.full_like(label_map, IGNORE)
        if shift > 0:
            expected[:, shift:] = label_map[:, :-shift]
            np.testing.assert_array_equal(out_image[:, :shift], 128)
        else:
            expected[:, :shift] = label_map[:, -shift:]
            np.testing.assert_array_equal(out_image[:, :shift], image[:, -shift:])
        np.testing.assert_array_equal(out_labels, expected)
        shifts.add(shift)
    assert shifts == {SHIFT, -SHIFT}


def test_label_map_pushed_out_of_the_frame_is_all_ignored():
    policy = autoaugment.DetectionPolicy(
        [[("TranslateY_BBox", 1.0, 10)]], constants=magnitudes.Constants(translate_const=40.0)
    )
    augment = augment_factory.label_map_augmentation(policy, IGNORE)
    _, labels = augment(tf.zeros([16, 16, 3], tf.uint8), tf.ones([16, 16], tf.int32))
    np.testing.assert_array_equal(labels.numpy(), IGNORE)


def test_label_map_augmentation_from_params():
    assert augment_factory.label_map_augmentation_from_params(_section(""), "s", IGNORE) is None
    augment = augment_factory.label_map_augmentation_from_params(_section("v2"), "s", IGNORE)
    image, labels = augment(tf.zeros([20, 20, 3], tf.uint8), tf.zeros([20, 20], tf.uint8))
    assert image.shape == (20, 20, 3) and labels.shape == (20, 20) and labels.dtype == tf.int32
    assert set(np.unique(labels.numpy())) <= {0, IGNORE}
