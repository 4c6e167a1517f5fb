"""ShapeMask parser: static shapes, sampling, jittered / outer boxes and mask targets against
NumPy, the partially supervised split, class-agnostic mode, and bad params."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from detection.configs import factory as config_factory
from detection.dataloader import factory
from detection.hyperparameters import ParamsError

import numpy_references as references

K = 6  # num_sampled_masks
CROP = 8
UPSAMPLE = 2
HEIGHT, WIDTH = 48, 64  # the synthetic examples' original size


def _params(paths=None, tfrecord=True, **parser):
    params = config_factory.config_generator("shapemask")
    override = {
        "architecture": {"num_classes": 4, "min_level": 3, "max_level": 5},
        "shapemask_parser": dict(
            {
                "output_size": [64, 64],
                "max_num_instances": 8,
                "num_sampled_masks": K,
                "mask_crop_size": CROP,
                "upsample_factor": UPSAMPLE,
            },
            **parser,
        ),
        "shapemask_head": {"mask_crop_size": CROP, "upsample_factor": UPSAMPLE},
    }
    if paths is not None:
        override["train"] = {
            "train_file_pattern": paths["train_file_pattern"],
            "train_batch_size": 2,
        }
        override["eval"] = {"eval_file_pattern": paths["val_file_pattern"], "eval_batch_size": 2}
    if tfrecord:
        override.setdefault("train", {})["train_dataset_type"] = "tfrecord"
        override.setdefault("eval", {})["eval_dataset_type"] = "tfrecord"
    params.override(override)
    params.validate()
    return params


def _ellipse(centre, radii):
    rows, cols = np.mgrid[:HEIGHT, :WIDTH] + 0.5
    inside = ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1
    return inside.astype(np.uint8)


# Three instances away from the borders, one per class: (class, mask).
INSTANCES = (
    (1, _ellipse((16, 16), (9, 12))),
    (2, _ellipse((30, 44), (10, 8))),
    (3, _ellipse((36, 14), (6, 6))),
)


def _example(instances=INSTANCES):
    image = np.random.default_rng(3).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    feature = {
        "image/encoded": [tf.io.encode_jpeg(image).numpy()],
        "image/source_id": [b"7"],
    }
    boxes, pngs = [], []
    for _, mask in instances:
        ys, xs = np.nonzero(mask)
        boxes.append(
            [ys.min() / HEIGHT, xs.min() / WIDTH, (ys.max() + 1) / HEIGHT, (xs.max() + 1) / WIDTH]
        )
        png = io.BytesIO()
        Image.fromarray(mask).save(png, format="PNG")
        pngs.append(png.getvalue())
    if instances:
        boxes = np.array(boxes)
        feature.update(
            {
                "image/object/bbox/ymin": boxes[:, 0].tolist(),
                "image/object/bbox/xmin": boxes[:, 1].tolist(),
                "image/object/bbox/ymax": boxes[:, 2].tolist(),
                "image/object/bbox/xmax": boxes[:, 3].tolist(),
                "image/object/class/label": [c for c, _ in instances],
                "image/object/mask": pngs,
            }
        )

    def to_feature(values):
        if isinstance(values[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if isinstance(values[0], (int, np.integer)):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    example = tf.train.Example(
        features=tf.train.Features(feature={k: to_feature(v) for k, v in feature.items()})
    )
    return tf.constant(example.SerializeToString())


def _pixel_box(mask):
    """The mask's tight box in network-input pixels (48x64 -> 64x64 input: scale 1)."""
    ys, xs = np.nonzero(mask)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], np.float64)


def _np_outer(box, scale=1.25, size=64):
    centre = (box[:2] + box[2:]) / 2
    half = (box[2:] - box[:2]) * scale / 2
    return np.clip(np.concatenate([centre - half, centre + half]), 0, size)


def _assert_binary_crop(got, mask, box, size):
    """`got` is the NumPy crop of `mask` over `box`, thresholded at 0.5 (ties excepted)."""
    soft = references.crop_and_resize_mask(mask, box, size)
    want = (soft >= 0.5).astype(np.float32)
    differ = got != want
    assert np.all(np.abs(soft[differ] - 0.5) < 1e-4), (got, want)
    assert set(np.unique(got)) <= {0.0, 1.0}


def _parse(params, serialized, mode="train"):
    features, labels = factory.parser_from_params(params, mode)(serialized)
    return features, {k: tf.nest.map_structure(lambda t: t.numpy(), v) for k, v in labels.items()}


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_element_has_a_static_shape(tiny_shapes, mode):
    dataset = factory.input_fn_from_params(_params(tiny_shapes), mode, deterministic=True)()
    specs = tf.nest.flatten(dataset.element_spec)
    assert specs and all(spec.shape.is_fully_defined() for spec in specs), dataset.element_spec
    labels = dataset.element_spec[1]
    if mode == "train":
        assert labels["mask_boxes"].shape == (2, K, 4)
        assert labels["mask_outer_boxes"].shape == (2, K, 4)
        assert labels["mask_classes"].shape == (2, K) and labels["mask_classes"].dtype == tf.int32
        assert labels["mask_targets"].shape == (2, K, CROP, CROP)
        assert labels["fine_mask_targets"].shape == (2, K, CROP * UPSAMPLE, CROP * UPSAMPLE)
        assert labels["mask_is_valid"].shape == (2, K)
        assert labels["cls_targets"]["3"].shape == (2, 8, 8, 9)
    else:
        assert sorted(labels) == ["box_targets", "cls_targets", "groundtruths", "num_positives"]


def test_without_jitter_samples_are_the_groundtruth_with_numpy_outer_boxes_and_targets():
    params = _params(
        aug_rand_hflip=False, aug_scale_min=1.0, aug_scale_max=1.0, box_jitter_scale=0.0
    )
    features, labels = _parse(params, _example(INSTANCES[:1]))
    np.testing.assert_allclose(features["image_info"][2], [1.0, 1.0])  # 48x64 -> 64x64
    _, mask = INSTANCES[0]
    box = _pixel_box(mask)
    np.testing.assert_allclose(labels["mask_boxes"], np.tile(box, (K, 1)), atol=1e-4)
    outer = _np_outer(box)
    np.testing.assert_allclose(labels["mask_outer_boxes"], np.tile(outer, (K, 1)), atol=1e-4)
    assert labels["mask_classes"].tolist() == [1] * K
    assert labels["mask_is_valid"].tolist() == [1] * K
    for k in range(K):
        _assert_binary_crop(labels["mask_targets"][k], mask, outer, CROP)
        _assert_binary_crop(labels["fine_mask_targets"][k], mask, outer, CROP * UPSAMPLE)
    # The object fills the middle of its outer box and none of its corners.
    assert labels["fine_mask_targets"][0][CROP, CROP] == 1
    assert labels["fine_mask_targets"][0][0, 0] == 0


def test_jittered_samples_cover_every_instance_with_numpy_targets():
    """Scale jitter and flips on: targets follow the jittered outer boxes, mapped back."""
    params = _params(box_jitter_scale=0.1, aug_scale_min=0.8, aug_scale_max=1.2)
    for seed in range(3):
        tf.random.set_seed(seed)
        features, labels = _parse(params, _example())
        info = features["image_info"].numpy()
        scale, offset = info[2], info[3]
        classes = labels["mask_classes"]
        # 3 instances, K = 6 slots: a permutation of 6 slots modulo 3 draws each twice.
        assert sorted(classes.tolist()) == [1, 1, 2, 2, 3, 3]
        for k in range(K):
            mask = dict(INSTANCES)[int(classes[k])]
            outer = labels["mask_outer_boxes"][k].astype(np.float64)
            np.testing.assert_allclose(outer, _np_outer(labels["mask_boxes"][k]), atol=1e-4)
            original = (outer + np.tile(offset, 2)) / np.tile(scale, 2)
            # The flip is not reported; the right mask orientation is the one that matches
            # (up to samples within 1e-3 of the 0.5 threshold).
            errors = []
            for candidate in (mask, mask[:, ::-1]):
                soft = references.crop_and_resize_mask(candidate, original, CROP)
                differ = (soft >= 0.5) != labels["mask_targets"][k]
                errors.append(np.sum(differ & (np.abs(soft - 0.5) >= 1e-3)))
            assert min(errors) == 0, errors


def test_fewer_slots_than_instances_draws_distinct_instances():
    params = _params(num_sampled_masks=2)
    for seed in range(4):
        tf.random.set_seed(seed)
        _, labels = _parse(params, _example())
        classes = labels["mask_classes"].tolist()
        assert len(set(classes)) == 2 and set(classes) <= {1, 2, 3}


def test_image_without_instances_samples_invalid_zeros():
    _, labels = _parse(_params(), _example(()))
    assert labels["mask_is_valid"].tolist() == [0] * K
    for key in ("mask_boxes", "mask_outer_boxes", "mask_targets", "fine_mask_targets"):
        assert np.all(labels[key] == 0), key
    assert labels["mask_classes"].tolist() == [0] * K
    assert labels["num_positives"] == 0


def test_mask_train_class_marks_the_other_classes_invalid():
    _, labels = _parse(_params(mask_train_class="1,3"), _example())
    classes = labels["mask_classes"]
    np.testing.assert_array_equal(labels["mask_is_valid"], np.isin(classes, [1, 3]).astype(int))
    assert 0 < labels["mask_is_valid"].sum() < K
    # The detector still learns every class.
    cls = np.concatenate([labels["cls_targets"][l].ravel() for l in "345"])
    assert {1, 2, 3} <= set(np.unique(cls))


def test_use_category_false_makes_one_foreground_class():
    _, labels = _parse(_params(use_category=False, mask_train_class="2"), _example())
    assert labels["mask_classes"].tolist() == [1] * K
    cls = np.concatenate([labels["cls_targets"][l].ravel() for l in "345"])
    assert set(np.unique(cls)) <= {-2, -1, 1} and 1 in cls
    # The split reads the dataset's classes: the two class-2 samples train masks.
    assert labels["mask_is_valid"].sum() == 2


def test_bad_params_name_their_key(tiny_shapes):
    with pytest.raises(ParamsError, match="shapemask_parser.mask_train_class='dogs'"):
        factory.parser_from_params(_params(mask_train_class="dogs"), "train")
    with pytest.raises(ParamsError, match="shapemask_parser.box_jitter_scale"):
        factory.parser_from_params(_params(box_jitter_scale=-1.0), "train")
    # The original's defaults read Google-internal sstables: a clear error, naming the key.
    with pytest.raises(ParamsError, match="train.train_dataset_type='sstable'.*tfrecord"):
        factory.input_fn_from_params(_params(tiny_shapes, tfrecord=False), "train")
    with pytest.raises(ParamsError, match="eval.eval_dataset_type='sstable'"):
        factory.input_fn_from_params(_params(tiny_shapes, tfrecord=False), "eval")
