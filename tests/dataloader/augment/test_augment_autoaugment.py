"""The AutoAugment detection policies inside tf.data: 1000 draws each, shapes and boxes."""

import numpy as np
import pytest
import tensorflow as tf

from detection.dataloader.augment import autoaugment
from detection.dataloader.augment import magnitudes
from detection.dataloader.augment import policies
from detection.dataloader.augment import randaugment

SIZE = 48
NUM_DRAWS = 1000
MAX_BOXES = 4
# The reference's pixel constants scaled to 48 px images (it saw ~640 px), so that boxes
# often survive the geometric ops and every code path is exercised.
SMALL_CONSTANTS = magnitudes.Constants(
    translate_const=20.0, translate_bbox_const=10.0, cutout_const=8, cutout_bbox_const=4
)


def _example(index):
    """Image with up to 4 boxes in the 4 quadrants (disjoint pixels) and their masks."""
    seed = tf.stack([tf.cast(index, tf.int32), 17])
    image = tf.random.stateless_uniform([SIZE, SIZE, 3], seed, 0, 256, tf.int32)
    num_boxes = tf.random.stateless_uniform([], seed + 1, 0, MAX_BOXES + 1, tf.int32)
    # Box k lies in quadrant k with a 2 px margin; pixel-aligned so masks match boxes.
    corners = tf.random.stateless_uniform([MAX_BOXES, 4], seed + 2, 0.0, 1.0)
    half = SIZE // 2
    lo = 2 + tf.floor(corners[:, :2] * (half // 2 - 2))
    hi = lo + 2 + tf.floor(corners[:, 2:] * (half - lo - 4))
    origin = tf.constant([[0, 0], [0, half], [half, 0], [half, half]], tf.float32)
    pixel_boxes = tf.concat([origin + lo, origin + hi], axis=1)[:num_boxes]
    rows = tf.range(SIZE, dtype=tf.float32)[None, :, None] + 0.5
    cols = tf.range(SIZE, dtype=tf.float32)[None, None, :] + 0.5
    b = pixel_boxes[:, :, None, None]
    masks = (rows > b[:, 0]) & (rows < b[:, 2]) & (cols > b[:, 1]) & (cols < b[:, 3])
    return {
        "image": tf.cast(image, tf.uint8),
        "boxes": pixel_boxes / SIZE,
        "masks": tf.cast(masks, tf.uint8),
        "classes": tf.range(num_boxes) + 1,
    }


def _augmented_dataset(policy, num_draws):
    def augment(index, example):
        seed = tf.stack([tf.cast(index, tf.int32), 99])
        image, boxes, masks, indices = policy(
            example["image"], example["boxes"], example["masks"], seed=seed
        )
        return {
            "image": image,
            "boxes": boxes,
            "masks": masks,
            "indices": indices,
            "classes": tf.gather(example["classes"], indices),
            "num_input_boxes": tf.shape(example["boxes"])[0],
        }

    dataset = tf.data.Dataset.range(num_draws).map(lambda i: (i, _example(i)))
    return dataset.map(augment, num_parallel_calls=2, deterministic=True)


def _check_draws(policy, num_draws):
    """Runs `num_draws` draws in tf.data and checks shapes, boxes and masks; returns
    (boxes kept, input boxes)."""
    dataset = _augmented_dataset(policy, num_draws)
    spec = dataset.element_spec
    assert spec["image"].shape == (SIZE, SIZE, 3) and spec["image"].dtype == tf.uint8
    assert spec["boxes"].shape.as_list() == [None, 4]
    assert spec["masks"].shape.as_list() == [None, SIZE, SIZE]
    assert spec["indices"].shape.as_list() == [None]
    padding = {key: tf.constant(-1, spec[key].dtype) for key in ("boxes", "indices", "classes")}
    padding.update(
        image=tf.constant(0, tf.uint8), masks=tf.constant(0, tf.uint8), num_input_boxes=0
    )
    batch = next(iter(dataset.padded_batch(num_draws, padding_values=padding)))
    boxes = batch["boxes"].numpy()
    indices = batch["indices"].numpy()
    masks = batch["masks"].numpy()
    num_inputs = batch["num_input_boxes"].numpy()
    kept = indices >= 0
    assert np.isfinite(boxes).all()
    real = boxes[kept]
    assert (real >= 0.0).all() and (real <= 1.0).all()
    # No degenerate box is counted.
    assert (real[:, 2] > real[:, 0]).all() and (real[:, 3] > real[:, 1]).all()
    # Kept boxes come first; indices increase and point into the input rows.
    num_kept = kept.sum(1)
    assert (kept == (np.arange(kept.shape[1])[None] < num_kept[:, None])).all()
    for row in range(num_draws):
        ids = indices[row, : num_kept[row]]
        assert (np.diff(ids) > 0).all() and (ids < num_inputs[row]).all()
    np.testing.assert_array_equal(batch["classes"].numpy()[kept], indices[kept] + 1)
    # Each mask stays inside its box (whole-image warps move both; in-box ops keep pixels
    # in their box's pixels): pixel centres inside the box, up to one pixel of rounding.
    pixel_boxes = boxes[..., None, None] * SIZE
    rows = np.arange(SIZE)[:, None] + 0.5
    cols = np.arange(SIZE)[None, :] + 0.5
    inside = (
        (rows > pixel_boxes[:, :, 0] - 1)
        & (rows < pixel_boxes[:, :, 2] + 1)
        & (cols > pixel_boxes[:, :, 1] - 1)
        & (cols < pixel_boxes[:, :, 3] + 1)
    )
    assert not (masks.astype(bool) & ~inside).any()
    return num_kept.sum(), num_inputs.sum()


@pytest.mark.parametrize("name", sorted(policies.POLICIES))
def test_policy_1000_draws_in_tf_data(name):
    kept, inputs = _check_draws(
        autoaugment.build_policy(name, constants=SMALL_CONSTANTS), NUM_DRAWS
    )
    if name != "test":  # `test` only translates by 8 px: nothing leaves the image.
        assert 0 < kept < inputs


def test_randaugment_for_detection_in_tf_data():
    # One layer: the same ops and paths as two, half the graph to build.
    augment = randaugment.RandAugment(
        num_layers=1, magnitude=6, constants=SMALL_CONSTANTS
    ).augment_detection
    kept, inputs = _check_draws(augment, 300)
    assert 0 < kept < inputs


def test_policy_with_reference_constants_in_tf_data():
    # 100-250 px shifts on 48 px images: most boxes leave, the n = 0 paths run.
    kept, inputs = _check_draws(autoaugment.build_policy("v0"), 300)
    assert kept < inputs


def test_same_seed_same_result_and_seeds_vary():
    policy = autoaugment.build_policy("v1")
    example = _example(3)
    args = (example["image"], example["boxes"], example["masks"])
    first = policy(*args, seed=tf.constant([5, 6]))
    again = policy(*args, seed=tf.constant([5, 6]))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    images = {policy(*args, seed=tf.constant([5, s])).image.numpy().tobytes() for s in range(12)}
    assert len(images) > 3


def test_policy_without_masks_and_with_dynamic_shapes():
    policy = autoaugment.build_policy("v0", seed=1)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, 3], tf.uint8),
            tf.TensorSpec([None, 4], tf.float32),
        ]
    )
    def augment(image, boxes):
        return policy(image, boxes)

    example = _example(5)
    out = augment(example["image"], example["boxes"])
    assert out.masks is None and out.image.shape == (SIZE, SIZE, 3)
    out = augment(tf.zeros([30, 41, 3], tf.uint8), tf.zeros([0, 4]))
    assert out.image.shape == (30, 41, 3) and out.boxes.shape == (0, 4)


def test_degenerate_input_boxes_are_dropped():
    policy = autoaugment.build_policy("test", constants=SMALL_CONSTANTS)
    boxes = tf.constant([[0.1, 0.1, 0.1, 0.5], [0.2, 0.2, 0.4, 0.4], [0.5, 0.6, 0.7, 0.6]])
    out = policy(tf.zeros([SIZE, SIZE, 3], tf.uint8), boxes, seed=tf.constant([0, 0]))
    np.testing.assert_array_equal(out.indices.numpy(), [1])


def test_bad_names_and_inputs_raise():
    with pytest.raises(ValueError, match="unknown AutoAugment policy 'v9'.*'v0'"):
        autoaugment.build_policy("v9")
    with pytest.raises(ValueError, match="unknown op 'Blur'"):
        autoaugment.DetectionPolicy([[("Blur", 0.5, 3)]], name="mine")
    with pytest.raises(ValueError, match="magnitude in"):
        autoaugment.DetectionPolicy([[("Color", 0.5, 11)]], name="mine")
    policy = autoaugment.build_policy("v0")
    with pytest.raises(ValueError, match="uint8"):
        policy(tf.zeros([8, 8, 3], tf.float32), tf.zeros([0, 4]))
    with pytest.raises(ValueError, match=r"\[n, 4\]"):
        policy(tf.zeros([8, 8, 3], tf.uint8), tf.zeros([3]))
