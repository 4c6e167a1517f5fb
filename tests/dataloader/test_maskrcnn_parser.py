"""Mask R-CNN parser: static shapes, RPN targets, mask crops against NumPy, empty images."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools import mask as mask_api

from detection.configs import factory as config_factory
from detection.dataloader import factory

import numpy_references as references

CROP = 16
MAX_INSTANCES = 10
RPN_BATCH = 32


def _params(paths, include_mask=True, **parser):
    params = config_factory.config_generator("mask_rcnn")
    params.override(
        {
            "architecture": {
                "num_classes": 4,
                "min_level": 2,
                "max_level": 4,
                "include_mask": include_mask,
            },
            "train": {"train_file_pattern": paths["train_file_pattern"], "train_batch_size": 2},
            "eval": {"eval_file_pattern": paths["val_file_pattern"], "eval_batch_size": 3},
            "rpn_score_loss": {"rpn_batch_size_per_im": RPN_BATCH},
            "maskrcnn_parser": dict(
                {
                    "output_size": [64, 64],
                    "aug_scale_min": 0.8,
                    "aug_scale_max": 1.2,
                    "mask_crop_size": CROP,
                    "rpn_batch_size_per_im": RPN_BATCH,
                    "max_num_instances": MAX_INSTANCES,
                },
                **parser,
            ),
        }
    )
    return params


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_element_has_a_static_shape(tiny_shapes, mode):
    dataset = factory.input_fn_from_params(_params(tiny_shapes), mode, deterministic=True)()
    specs = tf.nest.flatten(dataset.element_spec)
    assert specs and all(spec.shape.is_fully_defined() for spec in specs), dataset.element_spec
    features, labels = dataset.element_spec
    batch = 2 if mode == "train" else 3
    assert features["images"].shape == (batch, 64, 64, 3)
    assert features["image_info"].shape == (batch, 4, 2)
    assert features["source_ids"].shape == (batch,)
    if mode == "train":
        assert sorted(labels) == [
            "gt_boxes",
            "gt_classes",
            "gt_masks",
            "rpn_box_targets",
            "rpn_score_targets",
        ]
        assert labels["rpn_score_targets"]["2"].shape == (batch, 16, 16, 3)
        assert labels["rpn_box_targets"]["4"].shape == (batch, 4, 4, 12)
        assert labels["gt_boxes"].shape == (batch, MAX_INSTANCES, 4)
        assert labels["gt_classes"].shape == (batch, MAX_INSTANCES)
        assert labels["gt_classes"].dtype == tf.int32
        assert labels["gt_masks"].shape == (batch, MAX_INSTANCES, CROP, CROP)
    else:
        assert list(labels) == ["groundtruths"]
        assert labels["groundtruths"]["boxes"].shape == (batch, MAX_INSTANCES, 4)


def test_without_include_mask_there_are_no_gt_masks(tiny_shapes):
    dataset = factory.input_fn_from_params(
        _params(tiny_shapes, include_mask=False), "train", deterministic=True
    )()
    assert "gt_masks" not in dataset.element_spec[1]
    assert all(s.shape.is_fully_defined() for s in tf.nest.flatten(dataset.element_spec))


def test_rpn_targets_are_sampled_within_the_rpn_batch(tiny_shapes):
    dataset = factory.input_fn_from_params(_params(tiny_shapes), "train", deterministic=True)()
    total_positives = 0
    for features, labels in dataset.take(6):
        assert np.all(np.isfinite(features["images"].numpy()))
        scores = np.concatenate(
            [labels["rpn_score_targets"][l].numpy().reshape(2, -1) for l in "234"], axis=1
        )
        assert set(np.unique(scores)) <= {-1, 0, 1}
        assert np.all(np.sum(scores >= 0, axis=1) <= RPN_BATCH)
        assert np.all(np.sum(scores == 1, axis=1) <= RPN_BATCH // 2)
        total_positives += int(np.sum(scores == 1))
        classes = labels["gt_classes"].numpy()
        boxes = labels["gt_boxes"].numpy()
        valid = classes >= 0
        assert np.all(classes[valid] >= 1) and np.all(classes[valid] <= 3)
        assert np.all(boxes[~valid] == -1) and np.all(labels["gt_masks"].numpy()[~valid] == -1)
        assert np.all(boxes[valid] >= 0) and np.all(boxes[valid] <= 64)
        assert np.all(boxes[valid][:, 2:] > boxes[valid][:, :2])  # degenerate boxes dropped
        masks = labels["gt_masks"].numpy()[valid]
        assert np.all((masks >= 0) & (masks <= 1))
        for level in "234":
            assert np.all(np.isfinite(labels["rpn_box_targets"][level].numpy()))
    assert total_positives > 0


def _annotations_by_image(path):
    with open(path) as f:
        coco = json.load(f)
    by_image = {image["id"]: (image, []) for image in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]][1].append(ann)
    return by_image


@pytest.mark.parametrize("output_size", [64, 96])
def test_gt_masks_are_numpy_crops_of_the_annotation_masks(tiny_shapes, output_size):
    # No jitter: the network input is the image scaled by output_size / 64 (and maybe
    # flipped), so every instance can be found in the annotations by its box.
    params = _params(
        tiny_shapes,
        output_size=[output_size, output_size],
        aug_scale_min=1.0,
        aug_scale_max=1.0,
        aug_rand_hflip=True,
    )
    dataset = factory.input_fn_from_params(params, "train", deterministic=True)()
    by_image = _annotations_by_image(tiny_shapes["train_annotations"])
    checked = 0
    for features, labels in dataset.take(5):
        for b in range(2):
            image, anns = by_image[int(features["source_ids"][b])]
            scale = float(features["image_info"][b, 2, 0])
            assert scale == pytest.approx(output_size / 64)
            for i in np.flatnonzero(labels["gt_classes"][b].numpy() >= 0):
                box = labels["gt_boxes"][b, i].numpy() / scale
                crop = labels["gt_masks"][b, i].numpy()
                matches = []
                for ann, mirror in [(a, m) for a in anns for m in (False, True)]:
                    x, y, w, h = ann["bbox"]
                    ref_box = np.array([y, x, y + h, x + w])
                    mask = mask_api.decode(ann["segmentation"])
                    if mirror:
                        ref_box = np.array([y, image["width"] - x - w, y + h, image["width"] - x])
                        mask = mask[:, ::-1]
                    if np.allclose(box, ref_box, atol=1e-3):
                        assert labels["gt_classes"][b, i] == ann["category_id"]
                        matches.append(references.crop_and_resize_mask(mask, ref_box, CROP))
                assert matches, f"instance box {box} not in the annotations"
                errors = [np.abs(crop - ref).max() for ref in matches]
                assert min(errors) < 1e-4, errors
                checked += 1
    assert checked >= 10


def _example_without_boxes(crowd):
    """An image with no instance (crowd=False) or only one crowd instance (crowd=True)."""
    image = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    feature = {
        "image/encoded": [tf.io.encode_jpeg(image).numpy()],
        "image/source_id": [b"7"],
    }
    if crowd:
        png = io.BytesIO()
        mask = np.zeros((48, 64), np.uint8)
        mask[8:40, 8:56] = 1
        Image.fromarray(mask).save(png, format="PNG")
        feature.update(
            {
                "image/object/bbox/ymin": [8 / 48],
                "image/object/bbox/xmin": [8 / 64],
                "image/object/bbox/ymax": [40 / 48],
                "image/object/bbox/xmax": [56 / 64],
                "image/object/class/label": [2],
                "image/object/is_crowd": [1],
                "image/object/mask": [png.getvalue()],
            }
        )

    def to_feature(values):
        if isinstance(values[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if isinstance(values[0], int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    example = tf.train.Example(
        features=tf.train.Features(feature={k: to_feature(v) for k, v in feature.items()})
    )
    return tf.constant(example.SerializeToString())


@pytest.mark.parametrize("crowd", [False, True])
def test_image_without_boxes_gives_all_negative_targets(tiny_shapes, crowd):
    parser = factory.parser_from_params(_params(tiny_shapes), "train")
    features, labels = parser(_example_without_boxes(crowd))
    assert np.all(np.isfinite(features["images"].numpy()))
    scores = np.concatenate([labels["rpn_score_targets"][l].numpy().ravel() for l in "234"])
    assert set(np.unique(scores)) == {-1, 0}
    assert np.sum(scores == 0) == RPN_BATCH
    for level in "234":
        assert np.all(labels["rpn_box_targets"][level].numpy() == 0)
    assert np.all(labels["gt_boxes"].numpy() == -1)
    assert np.all(labels["gt_classes"].numpy() == -1)
    assert labels["gt_masks"].shape == (MAX_INSTANCES, CROP, CROP)
    assert np.all(labels["gt_masks"].numpy() == -1)


def test_crowd_instance_is_kept_when_not_skipped(tiny_shapes):
    params = _params(
        tiny_shapes,
        skip_crowd_during_training=False,
        aug_rand_hflip=False,
        aug_scale_min=1.0,
        aug_scale_max=1.0,
    )
    _, labels = factory.parser_from_params(params, "train")(_example_without_boxes(True))
    # 48x64 image into 64x64: scale 1.
    np.testing.assert_allclose(labels["gt_boxes"][0].numpy(), [8, 8, 40, 56])
    assert labels["gt_classes"].numpy().tolist() == [2] + [-1] * (MAX_INSTANCES - 1)
    np.testing.assert_allclose(labels["gt_masks"][0].numpy(), 1.0)


def test_eval_reads_every_image_once_with_its_groundtruth_count(tiny_shapes):
    by_image = _annotations_by_image(tiny_shapes["val_annotations"])
    dataset = factory.input_fn_from_params(_params(tiny_shapes), "eval", deterministic=True)()
    seen = []
    for features, labels in dataset:
        gt = labels["groundtruths"]
        for i in np.flatnonzero(features["valid"].numpy()):
            image_id = int(gt["source_id"][i])
            seen.append(image_id)
            assert int(gt["num_detections"][i]) == len(by_image[image_id][1])
            assert float(gt["height"][i]) == by_image[image_id][0]["height"]
    assert sorted(seen) == sorted(by_image)
