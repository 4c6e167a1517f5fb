"""RetinaNet parser and input_fn: static shapes, targets, groundtruths, bad class ids."""

import numpy as np
import pytest
import tensorflow as tf

from detection.configs import factory as config_factory
from detection.dataloader import factory
from detection.hyperparameters import ParamsError


def _params(paths, **parser):
    params = config_factory.config_generator("retinanet")
    params.override(
        {
            "architecture": {"num_classes": 4, "min_level": 3, "max_level": 5},
            "train": {"train_file_pattern": paths["train_file_pattern"], "train_batch_size": 2},
            "eval": {"eval_file_pattern": paths["val_file_pattern"], "eval_batch_size": 3},
            "retinanet_parser": dict(
                {"output_size": [64, 64], "aug_scale_min": 0.8, "aug_scale_max": 1.2}, **parser
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
    assert labels["cls_targets"]["3"].shape == (batch, 8, 8, 9)
    assert labels["box_targets"]["5"].shape == (batch, 2, 2, 36)
    if mode == "eval":
        assert labels["groundtruths"]["boxes"].shape == (batch, 100, 4)


def test_train_targets_are_finite_and_positive_where_objects_are(tiny_shapes):
    dataset = factory.input_fn_from_params(_params(tiny_shapes), "train", deterministic=True)()
    for features, labels in dataset.take(4):
        assert np.all(np.isfinite(features["images"].numpy()))
        for level in ("3", "4", "5"):
            assert np.all(np.isfinite(labels["box_targets"][level].numpy()))
            assert labels["cls_targets"][level].numpy().max() <= 3
        positives = sum(int(np.sum(labels["cls_targets"][l].numpy() > 0)) for l in "345")
        assert positives == int(np.sum(labels["num_positives"].numpy()))


def test_eval_reads_every_image_once_with_original_pixel_groundtruths(tiny_shapes):
    import json

    with open(tiny_shapes["val_annotations"]) as f:
        coco = json.load(f)
    dataset = factory.input_fn_from_params(_params(tiny_shapes), "eval", deterministic=True)()
    seen = []
    for features, labels in dataset:
        gt = labels["groundtruths"]
        valid = features["valid"].numpy()
        for i in np.flatnonzero(valid):
            image_id = int(gt["source_id"][i])
            seen.append(image_id)
            anns = [a for a in coco["annotations"] if a["image_id"] == image_id]
            n = int(gt["num_detections"][i])
            assert n == len(anns)
            expected = sorted(
                [
                    a["bbox"][1],
                    a["bbox"][0],
                    a["bbox"][1] + a["bbox"][3],
                    a["bbox"][0] + a["bbox"][2],
                ]
                for a in anns
            )
            got = sorted(gt["boxes"][i, :n].numpy().tolist())
            np.testing.assert_allclose(got, expected, atol=1e-3)
            # Eval resizes without jitter: scale maps the original size onto 64 px.
            np.testing.assert_allclose(
                features["image_info"][i, 2].numpy(),
                64.0 / features["image_info"][i, 0].numpy(),
                rtol=1e-6,
            )
    assert sorted(seen) == sorted(image["id"] for image in coco["images"])


def test_class_id_above_num_classes_names_source_id(tiny_shapes):
    params = _params(tiny_shapes)
    params.override({"architecture": {"num_classes": 2}})
    dataset = factory.input_fn_from_params(params, "eval", deterministic=True)()
    with pytest.raises(tf.errors.InvalidArgumentError, match="source_id"):
        for _ in dataset:
            pass


def test_empty_file_pattern_names_the_key(tiny_shapes):
    params = _params(tiny_shapes)
    params.override({"train": {"train_file_pattern": ""}})
    with pytest.raises(ParamsError, match="train.train_file_pattern"):
        factory.input_fn_from_params(params, "train")
