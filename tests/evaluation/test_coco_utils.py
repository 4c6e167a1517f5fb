"""Tests for detection.evaluation.coco_utils: box mapping, padding, mask paste, COCO formats."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_api

from detection.evaluation import coco_utils

import numpy_references as references


def make_predictions(source_ids, boxes, classes, scores, num_detections, image_info, **extra):
    predictions = {
        "source_id": np.asarray(source_ids, np.int64),
        "detection_boxes": np.asarray(boxes, np.float32),
        "detection_classes": np.asarray(classes, np.int32),
        "detection_scores": np.asarray(scores, np.float32),
        "num_detections": np.asarray(num_detections, np.int32),
        "image_info": np.asarray(image_info, np.float32),
    }
    predictions.update(extra)
    return predictions


def test_predictions_to_results_skips_padding_and_maps_boxes():
    info = [
        [[100, 80], [50, 160], [0.5, 2.0], [3.0, 5.0]],
        [[64, 64], [64, 64], [1.0, 1.0], [0.0, 0.0]],
        [[64, 64], [64, 64], [1.0, 1.0], [0.0, 0.0]],
        [[64, 64], [64, 64], [1.0, 1.0], [0.0, 0.0]],
    ]
    boxes = np.full([4, 3, 4], 7.0)
    boxes[0, 0] = [10, 20, 30, 40]
    boxes[0, 1] = [0, 0, 5, 5]
    boxes[1, 0] = [1, 2, 3, 4]
    predictions = make_predictions(
        source_ids=[5, 6, -1, 8],
        boxes=boxes,
        classes=[[2, 1, -1], [3, -1, -1], [1, 1, 1], [1, 1, 1]],
        scores=[[0.75, 0.5, 0.0], [0.25, 0, 0], [1, 1, 1], [1, 1, 1]],
        num_detections=[2, 1, 3, 3],
        image_info=info,
        valid=np.array([True, True, True, False]),
    )
    image_ids, results = coco_utils.predictions_to_coco_results(predictions)
    assert image_ids == [5, 6]
    assert results == [
        {"image_id": 5, "category_id": 2, "bbox": [12.5, 26.0, 10.0, 40.0], "score": 0.75},
        {"image_id": 5, "category_id": 1, "bbox": [2.5, 6.0, 2.5, 10.0], "score": 0.5},
        {"image_id": 6, "category_id": 3, "bbox": [2.0, 1.0, 2.0, 2.0], "score": 0.25},
    ]


def test_predictions_errors_name_the_problem():
    good = make_predictions([1], np.zeros([1, 2, 4]), [[1, 1]], [[1, 1]], [1], np.ones([1, 4, 2]))
    bad = dict(good)
    del bad["detection_scores"]
    with pytest.raises(ValueError, match="detection_scores"):
        coco_utils.predictions_to_coco_results(bad)
    with pytest.raises(ValueError, match="num_detections 3"):
        coco_utils.predictions_to_coco_results(dict(good, num_detections=np.array([3])))
    with pytest.raises(ValueError, match=r"classes \[0\]"):
        coco_utils.predictions_to_coco_results(dict(good, detection_classes=np.array([[0, 1]])))
    with pytest.raises(ValueError, match="detection_masks"):
        coco_utils.predictions_to_coco_results(good, include_mask=True)


def test_groundtruths_to_dataset_skips_padding():
    groundtruths = {
        "source_id": np.array([3, -1, 4]),
        "height": np.array([60, 1, 70]),
        "width": np.array([80, 1, 90]),
        "num_detections": np.array([2, 2, 0]),
        "boxes": np.array(
            [
                [[1, 2, 11, 22], [0, 0, 4, 4], [-1, -1, -1, -1]],
                [[0, 0, 9, 9]] * 3,
                [[-1, -1, -1, -1]] * 3,
            ],
            np.float32,
        ),
        "classes": np.array([[2, 1, -1], [1, 1, 1], [-1, -1, -1]]),
        "areas": np.array([[150.0, 16.0, -1], [1, 1, 1], [-1, -1, -1]], np.float32),
        "is_crowds": np.array([[0, 1, -1], [0, 0, 0], [-1, -1, -1]]),
    }
    dataset = coco_utils.groundtruths_to_coco_dataset(groundtruths, category_names={1: "one"})
    assert dataset["images"] == [
        {"id": 3, "height": 60, "width": 80},
        {"id": 4, "height": 70, "width": 90},
    ]
    assert dataset["annotations"] == [
        {
            "id": 1,
            "image_id": 3,
            "category_id": 2,
            "bbox": [2.0, 1.0, 20.0, 10.0],
            "area": 150.0,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 3,
            "category_id": 1,
            "bbox": [0.0, 0.0, 4.0, 4.0],
            "area": 16.0,
            "iscrowd": 1,
        },
    ]
    assert dataset["categories"] == [{"id": 1, "name": "one"}, {"id": 2, "name": "2"}]
    # Without `areas` the box area is used, without `is_crowds` nothing is crowd.
    del groundtruths["areas"], groundtruths["is_crowds"]
    annotations = coco_utils.groundtruths_to_coco_dataset(groundtruths)["annotations"]
    assert [(a["area"], a["iscrowd"]) for a in annotations] == [(200.0, 0), (16.0, 0)]


def test_masks_are_pasted_in_original_pixels_and_rle_encoded():
    rng = np.random.default_rng(2)
    masks = rng.uniform(size=[1, 2, 6, 6]).astype(np.float32)
    info = [[[40, 50], [80, 25], [2.0, 0.5], [0.0, 0.0]]]
    boxes = [[[10.0, 5.0, 60.0, 20.0], [0.0, 0.0, 40.0, 10.0]]]
    outer = [[[8.0, 4.0, 64.0, 22.0], [0.0, 0.0, 40.0, 10.0]]]
    predictions = make_predictions(
        [9], boxes, [[1, 2]], [[0.9, 0.8]], [2], info, detection_masks=masks
    )
    _, results = coco_utils.predictions_to_coco_results(predictions, include_mask=True)
    original = [[5.0, 10.0, 30.0, 40.0], [0.0, 0.0, 20.0, 20.0]]
    for result, mask, box in zip(results, masks[0], original):
        json.dumps(result)  # RLE counts must be JSON-serialisable
        np.testing.assert_array_equal(
            mask_api.decode(result["segmentation"]), references.paste_mask(mask, box, 40, 50)
        )
    # ShapeMask's masks span their outer boxes.
    _, results = coco_utils.predictions_to_coco_results(
        dict(predictions, detection_outer_boxes=np.asarray(outer, np.float32)), include_mask=True
    )
    np.testing.assert_array_equal(
        mask_api.decode(results[0]["segmentation"]),
        references.paste_mask(masks[0, 0], [4.0, 8.0, 32.0, 44.0], 40, 50),
    )
    assert results[0]["bbox"] == [10.0, 5.0, 30.0, 25.0]


def test_load_coco_json_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        coco_utils.load_coco_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        coco_utils.load_coco_json(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="images"):
        coco_utils.load_coco_json(bad)


def test_load_coco_json_is_quiet(tmp_path, capsys):
    path = tmp_path / "gt.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "height": 8, "width": 8}],
                "annotations": [],
                "categories": [{"id": 1, "name": "a"}],
            }
        )
    )
    coco = coco_utils.load_coco_json(path)
    empty = coco_utils.load_results(coco, [])
    results = coco_utils.load_results(
        coco, [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5}]
    )
    assert capsys.readouterr().out == ""
    assert coco.getImgIds() == [1] and empty.getAnnIds() == [] and results.getAnnIds() == [1]
