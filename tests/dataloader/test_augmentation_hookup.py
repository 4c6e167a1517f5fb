"""`aug_policy` in the detection parsers: the params, classes and masks following the policy's
kept boxes, and the RetinaNet pipeline under every policy (1,000 draws each)."""

import numpy as np
import pytest
import tensorflow as tf

from detection.configs import factory as config_factory
from detection.dataloader import factory, preprocess_ops
from detection.dataloader.augment import autoaugment, magnitudes
from detection.dataloader.augment import factory as augment_factory
from detection.dataloader.maskrcnn_parser import MaskRCNNParser
from detection.hyperparameters import ParamsDict, ParamsError
from detection.ops import boxes as box_ops
from detection.ops.anchors import Anchors

import detection_examples as examples
import numpy_references as references

SIZE = 64
MAX_INSTANCES = 8
NUM_DRAWS = 1000
DRAWS_PER_BATCH = 100


def _retinanet_params(paths, **parser):
    params = config_factory.config_generator("retinanet")
    params.override(
        {
            "architecture": {"num_classes": 4, "min_level": 3, "max_level": 5},
            "train": {"train_file_pattern": paths["train_file_pattern"], "train_batch_size": 2},
            "retinanet_parser": dict(
                {
                    "output_size": [SIZE, SIZE],
                    "aug_scale_min": 0.8,
                    "aug_scale_max": 1.2,
                    "max_num_instances": MAX_INSTANCES,
                },
                **parser,
            ),
        }
    )
    return params


@pytest.mark.parametrize(
    "model, section",
    [
        ("retinanet", "retinanet_parser"),
        ("mask_rcnn", "maskrcnn_parser"),
        ("shapemask", "shapemask_parser"),
    ],
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_unknown_policy_names_the_key_and_lists_the_policies(model, section, mode):
    params = config_factory.config_generator(model)
    params.override({section: {"aug_policy": "v9"}})
    with pytest.raises(ParamsError) as error:
        factory.parser_from_params(params, mode)
    message = str(error.value)
    assert f"{section}.aug_policy='v9'" in message
    for name in ("'v0'", "'v1'", "'v2'", "'v3'", "'test'", "'randaugment'"):
        assert name in message


def test_randaugment_parameters_out_of_range_name_the_keys():
    params = config_factory.config_generator("retinanet")
    params.override({"retinanet_parser": {"aug_policy": "randaugment", "randaug_magnitude": 11}})
    with pytest.raises(ParamsError, match=r"retinanet_parser.randaug_magnitude=11"):
        factory.parser_from_params(params, "train")


def test_each_policy_name_builds_its_augmentation():
    section = ParamsDict({"aug_policy": "", "randaug_num_layers": 1, "randaug_magnitude": 5})
    assert augment_factory.detection_augmentation_from_params(section, "s") is None
    for name in augment_factory.DETECTION_POLICIES:
        section.override({"aug_policy": name})
        augmentation = augment_factory.detection_augmentation_from_params(section, "s")
        image = tf.zeros([16, 16, 3], tf.uint8)
        out_image, boxes, masks, indices = augmentation(
            image, tf.constant([[0.25, 0.25, 0.75, 0.75]]), None
        )
        assert out_image.shape == (16, 16, 3) and masks is None
        assert boxes.shape[1:] == (4,) and indices.dtype == tf.int32
    # A section without the key (a parser whose original had none) gets no augmentation.
    assert augment_factory.detection_augmentation_from_params(ParamsDict({"a": 1}), "s") is None


def test_image_augmentation_is_randaugment_only():
    section = ParamsDict(
        {"aug_policy": "randaugment", "randaug_num_layers": 2, "randaug_magnitude": 9}
    )
    augment = augment_factory.image_augmentation_from_params(section, "classification_parser")
    image = tf.cast(tf.random.stateless_uniform([20, 24, 3], [1, 2], 0, 256, tf.int32), tf.uint8)
    assert augment(image).shape == (20, 24, 3)
    section.override({"aug_policy": "v0"})
    with pytest.raises(ParamsError, match="classification_parser.aug_policy='v0'.*'randaugment'"):
        augment_factory.image_augmentation_from_params(section, "classification_parser")


# --- Masks and classes follow the policy's geometric ops through the Mask R-CNN parser ---

SHIFT = 40
CROP = 16
# Object 1 near the left edge, object 2 near the right: a 40 px shift either way pushes exactly
# one of them out of the 64 px image.
BOX_1, BOX_2 = (20, 2, 36, 18), (30, 46, 46, 62)


def _triangle(box):
    """Lower-left triangle of the box: a crop that tells the mask's position within its box."""
    mask = np.zeros([SIZE, SIZE], np.uint8)
    for row in range(box[0], box[2]):
        mask[row, box[1] : box[1] + (row - box[0]) + 1] = 1
    return mask


def _shifted(array, shift, fill):
    """`array` [h, w, ...] shifted right by `shift` px (left if negative), `fill` uncovered."""
    out = np.full_like(array, fill)
    if shift >= 0:
        out[:, shift:] = array[:, : array.shape[1] - shift]
    else:
        out[:, :shift] = array[:, -shift:]
    return out


def test_masks_and_classes_follow_a_translation_through_the_maskrcnn_parser():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 100, [SIZE, SIZE, 3], dtype=np.uint8)
    masks = np.stack([_triangle(BOX_1), _triangle(BOX_2)])
    image[masks[0] > 0] = (250, 10, 10)
    image[masks[1] > 0] = (10, 10, 250)
    serialized = examples.encode_example(image, [BOX_1, BOX_2], [1, 2], masks)
    policy = autoaugment.DetectionPolicy(
        [[("TranslateX_BBox", 1.0, 10)]],
        constants=magnitudes.Constants(translate_const=float(SHIFT)),
        seed=3,
    )
    parser = MaskRCNNParser(
        anchors=Anchors(2, 4, 1, [1.0], 8, [SIZE, SIZE]),
        rpn_batch_size_per_im=32,
        mask_crop_size=CROP,
        output_size=[SIZE, SIZE],
        num_classes=3,
        is_training=True,
        aug_rand_hflip=False,
        max_num_instances=4,
        autoaugment=policy,
    )
    parse = tf.function(parser)
    seen_shifts = set()
    for _ in range(8):
        features, labels = parse(serialized)
        classes = labels["gt_classes"].numpy()
        assert classes.tolist()[1:] == [-1, -1, -1]  # one object left, the other pushed out
        box = labels["gt_boxes"][0].numpy()
        shift = SHIFT if classes[0] == 1 else -SHIFT
        kept = 0 if classes[0] == 1 else 1
        original_box = np.array([BOX_1, BOX_2][kept], np.float32)
        np.testing.assert_allclose(box, original_box + [0, shift, 0, shift])
        expected_image = _shifted(image, shift, magnitudes.DETECTION_CONSTANTS.replace)
        np.testing.assert_allclose(
            features["images"].numpy(),
            preprocess_ops.normalize_image(expected_image).numpy(),
            atol=1e-5,
        )
        expected_crop = references.crop_and_resize_mask(_shifted(masks[kept], shift, 0), box, CROP)
        np.testing.assert_allclose(labels["gt_masks"][0].numpy(), expected_crop, atol=1e-5)
        seen_shifts.add(shift)
    assert seen_shifts == {SHIFT, -SHIFT}


def test_shapemask_parser_runs_the_policy_with_its_masks(tiny_shapes):
    """ShapeMask's section takes aug_policy too: a translation policy changes the training
    image and its mask targets, keeps every shape static, and leaves evaluation alone."""
    params = config_factory.config_generator("shapemask")
    params.override(
        {
            "architecture": {"num_classes": 4, "min_level": 3, "max_level": 6},
            "shapemask_parser": {
                "output_size": [SIZE, SIZE],
                "aug_rand_hflip": False,
                "aug_scale_min": 1.0,
                "aug_scale_max": 1.0,
                "max_num_instances": MAX_INSTANCES,
                "num_sampled_masks": 2,
                "mask_crop_size": 8,
                "mask_min_level": 3,
                "mask_max_level": 4,
            },
            "shapemask_head": {"mask_crop_size": 8},
        }
    )
    record = next(
        iter(tf.data.TFRecordDataset(tf.io.gfile.glob(tiny_shapes["train_file_pattern"])))
    )
    plain = factory.parser_from_params(params, "train")
    params.override({"shapemask_parser": {"aug_policy": "test"}})
    augmented = factory.parser_from_params(params, "train")
    assert augmented._autoaugment is not None and plain._autoaugment is None
    assert factory.parser_from_params(params, "eval")._autoaugment is None
    features, labels = augmented(record)
    reference_features, _ = plain(record)
    for tensor in tf.nest.flatten((features, labels)):
        assert tensor.shape.is_fully_defined()
    assert np.all(np.isfinite(features["images"].numpy()))
    assert not np.allclose(features["images"].numpy(), reference_features["images"].numpy())


# --- The RetinaNet pipeline under every policy ---


def _parser_with_instances(params):
    """The factory's RetinaNet parser, whose labels also carry the padded instance boxes."""
    parser = factory.parser_from_params(params, "train")
    train_labels = parser._train_labels

    def labels_and_instances(instances):
        labels = dict(train_labels(instances))
        labels["boxes"] = preprocess_ops.pad_to_fixed_size(
            instances.boxes, MAX_INSTANCES, -1.0, "boxes"
        )
        labels["classes"] = preprocess_ops.pad_to_fixed_size(
            instances.classes, MAX_INSTANCES, -1, "classes"
        )
        return labels

    parser._train_labels = labels_and_instances
    return parser


@pytest.mark.slow
@pytest.mark.parametrize("policy", augment_factory.DETECTION_POLICIES)
def test_retinanet_pipeline_with_each_policy(tiny_shapes, policy):
    params = _retinanet_params(tiny_shapes, aug_policy=policy, randaug_num_layers=2)
    parser = _parser_with_instances(params)
    anchors = factory.anchors_from_params(params, [SIZE, SIZE])
    files = tf.io.gfile.glob(tiny_shapes["train_file_pattern"])
    # The input reader's batching (drop_remainder) over the factory's parser.
    draws = (
        tf.data.TFRecordDataset(files)
        .repeat()
        .map(parser, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(DRAWS_PER_BATCH, drop_remainder=True)
        .take(NUM_DRAWS // DRAWS_PER_BATCH)
    )
    specs = tf.nest.flatten(draws.element_spec)
    assert all(spec.shape.is_fully_defined() for spec in specs), draws.element_spec
    num_boxes = 0
    for features, labels in draws:
        assert np.all(np.isfinite(features["images"].numpy()))
        boxes, classes = labels["boxes"].numpy(), labels["classes"].numpy()
        counted = classes >= 0
        assert np.all(boxes[~counted] == -1)
        assert np.all((classes[counted] >= 1) & (classes[counted] <= 3))
        valid = boxes[counted]
        assert np.all(valid >= 0) and np.all(valid <= SIZE), "a box outside the image"
        assert np.all(valid[:, 2:] > valid[:, :2]), "an empty box counted as an instance"
        num_boxes += len(valid)
        # Positive anchors decode to boxes inside the image, the counts agree.
        cls_targets = np.concatenate(
            [labels["cls_targets"][l].numpy().reshape(DRAWS_PER_BATCH, -1) for l in "345"], 1
        )
        box_targets = np.concatenate(
            [labels["box_targets"][l].numpy().reshape(DRAWS_PER_BATCH, -1, 4) for l in "345"], 1
        )
        assert np.all(np.isfinite(box_targets))
        positives = cls_targets > 0
        np.testing.assert_array_equal(positives.sum(1), labels["num_positives"].numpy())
        decoded = box_ops.decode_boxes(
            box_targets, anchors.boxes[None], weights=(1.0, 1.0, 1.0, 1.0)
        ).numpy()[positives]
        assert np.all(decoded > -1e-3) and np.all(decoded < SIZE + 1e-3)
        assert np.all(decoded[:, 2:] > decoded[:, :2])
    # `test` translates by 100 px, which empties every 64 px image; the others keep objects.
    assert num_boxes > 0 or policy == "test"
