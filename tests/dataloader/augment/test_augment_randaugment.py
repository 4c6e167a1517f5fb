"""RandAugment: N ops at magnitude M on images, inside tf.data, seeded."""

import numpy as np
import pytest
import tensorflow as tf

from detection.dataloader.augment import color_ops
from detection.dataloader.augment import randaugment

SIZE = 40


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE + 8, 3), dtype=np.uint8)


def test_in_tf_data_keeps_static_shape_and_changes_images():
    augment = randaugment.RandAugment(num_layers=2, magnitude=9, seed=3)
    images = tf.data.Dataset.from_tensor_slices(np.stack([_image(i) for i in range(4)]))
    dataset = images.repeat(50).map(augment, num_parallel_calls=2)
    assert dataset.element_spec == tf.TensorSpec([SIZE, SIZE + 8, 3], tf.uint8)
    outputs = np.stack(list(dataset.as_numpy_iterator()))
    inputs = np.stack([_image(i) for i in range(4)] * 50)
    changed = (outputs != inputs).any(axis=(1, 2, 3))
    # Only AutoContrast can leave a full-range noise image as it is (2 layers: rarely both).
    assert changed.mean() > 0.9


def test_same_seed_same_image_and_seeds_vary():
    augment = randaugment.RandAugment(num_layers=2, magnitude=7)
    image = tf.constant(_image())
    first = augment(image, seed=tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(first, augment(image, seed=tf.constant([1, 2])).numpy())
    others = {augment(image, seed=tf.constant([1, s])).numpy().tobytes() for s in range(3, 13)}
    assert len(others) >= 5


def test_zero_layers_is_identity():
    image = _image()
    out = randaugment.RandAugment(num_layers=0, magnitude=10)(tf.constant(image))
    np.testing.assert_array_equal(out.numpy(), image)


def test_single_op_uses_the_magnitude_mapping():
    image = _image()
    # Solarize at M = 5: threshold int(0.5 * 256) = 128.
    out = randaugment.RandAugment(1, 5, ops=("Solarize",))(tf.constant(image))
    np.testing.assert_array_equal(out.numpy(), color_ops.solarize(image, 128).numpy())
    # Color at M = 5: factor 0.5 * 1.8 + 0.1 = 1.0, the identity.
    out = randaugment.RandAugment(3, 5, ops=("Color",))(tf.constant(image))
    np.testing.assert_array_equal(out.numpy(), image)


def test_translate_moves_by_the_randaugment_constant():
    image = _image()
    for index in range(4):
        # M = 2: 0.2 * 100 = 20 px, left or right, grey (128) where uncovered.
        out = randaugment.RandAugment(1, 2, ops=("TranslateX",))(
            tf.constant(image), seed=tf.constant([index, 0])
        ).numpy()
        right = np.array_equal(out[:, 20:], image[:, :-20]) and (out[:, :20] == 128).all()
        left = np.array_equal(out[:, :-20], image[:, 20:]) and (out[:, -20:] == 128).all()
        assert right != left


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_layers"):
        randaugment.RandAugment(num_layers=-1)
    with pytest.raises(ValueError, match="magnitude"):
        randaugment.RandAugment(magnitude=11)
    with pytest.raises(ValueError, match="ops"):
        randaugment.RandAugment(ops=("Blur",))
    with pytest.raises(ValueError, match="uint8"):
        randaugment.RandAugment()(tf.zeros([8, 8, 3]))
