"""Tests for detection.evaluation.coco_utils: box mapping, padding, mask paste, COCO formats."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_api

from detection.evaluation import coco_utils


def reference_paste(mask, box, height, width, threshold=0.5):
    """Per-pixel bilinear sampling of the zero-bordered mask, by gathering 4 neighbours."""
    mask_h, mask_w = mask.shape
    ymin, xmin, ymax, xmax = box
    padded = np.pad(np.asarray(mask, np.float64), 1)  # zero border: index 0 and mask_h + 1
    rows = (np.arange(height) + 0.5 - ymin) / (ymax - ymin) * mask_h - 0.5 + 1
    cols = (np.arange(width) + 0.5 - xmin) / (xmax - xmin) * mask_w - 0.5 + 1
    rows = np.clip(rows, 0, mask_h + 1)
    cols = np.clip(cols, 0, mask_w + 1)
    r0 = np.minimum(np.floor(rows).astype(int), mask_h)
    c0 = np.minimum(np.floor(cols).astype(int), mask_w)
    fr = (rows - r0)[:, None]
    fc = (cols - c0)[None, :]
    r0, c0 = r0[:, None], c0[None, :]
    value = (
        (1 - fr) * (1 - fc) * padded[r0, c0]
        + (1 - fr) * fc * padded[r0, c0 + 1]
        + fr * (1 - fc) * padded[r0 + 1, c0]
        + fr * fc * padded[r0 + 1, c0 + 1]
    )
    return (value >= threshold).astype(np.uint8)


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


def test_boxes_to_original_pixels_by_hand():
    image_info = [[[100, 80], [50, 160], [0.5, 2.0], [3.0, 5.0]]]
    boxes = [[[10.0, 20.0, 30.0, 40.0]]]
    # y: (10 + 3) / 0.5 = 26, (30 + 3) / 0.5 = 66; x: (20 + 5) / 2 = 12.5, (40 + 5) / 2 = 22.5
    np.testing.assert_array_equal(
        coco_utils.boxes_to_original_pixels(boxes, image_info), [[[26.0, 12.5, 66.0, 22.5]]]
    )
    np.testing.assert_array_equal(
        coco_utils.yxyx_to_xywh([26.0, 12.5, 66.0, 22.5]), [12.5, 26.0, 10.0, 40.0]
    )


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


def test_paste_all_ones_mask_covers_box_with_rounded_corners():
    """Closed form for an all-ones mask: sampled value = coverage_y * coverage_x with the 1-d
    coverage clip(min(u + 1, cells - u), 0, 1) at mask coordinate u; edge pixels (other axis
    fully covered) are in exactly when their centre is inside the box."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        height, width = rng.integers(20, 70, size=2)
        ymin, xmin = rng.uniform(-10, 40, size=2)
        ymax, xmax = ymin + rng.uniform(1, 50), xmin + rng.uniform(1, 50)
        mask_h, mask_w = rng.integers(1, 30, size=2)
        pasted = coco_utils.paste_instance_mask(
            np.ones([mask_h, mask_w]), [ymin, xmin, ymax, xmax], height, width
        )
        centres_y = np.arange(height) + 0.5
        centres_x = np.arange(width) + 0.5
        u = (centres_y - ymin) / (ymax - ymin) * mask_h - 0.5
        v = (centres_x - xmin) / (xmax - xmin) * mask_w - 0.5
        coverage_y = np.clip(np.minimum(u + 1, mask_h - u), 0, 1)
        coverage_x = np.clip(np.minimum(v + 1, mask_w - v), 0, 1)
        expected = coverage_y[:, None] * coverage_x[None, :] >= 0.5
        assert pasted.dtype == np.uint8 and pasted.shape == (height, width)
        np.testing.assert_array_equal(pasted, expected.astype(np.uint8))
        full_x = coverage_x == 1
        inside_y = (centres_y >= ymin) & (centres_y <= ymax)
        np.testing.assert_array_equal(
            pasted[:, full_x], np.repeat(inside_y[:, None], full_x.sum(), axis=1)
        )


def test_paste_matches_per_pixel_reference():
    rng = np.random.default_rng(1)
    for _ in range(30):
        height, width = rng.integers(16, 80, size=2)
        ymin, xmin = rng.uniform(-15, 50, size=2)
        ymax, xmax = ymin + rng.uniform(0.5, 60), xmin + rng.uniform(0.5, 60)
        mask = rng.uniform(size=rng.integers(2, 16, size=2))
        box = [ymin, xmin, ymax, xmax]
        np.testing.assert_array_equal(
            coco_utils.paste_instance_mask(mask, box, height, width),
            reference_paste(mask, box, height, width),
        )


def test_paste_degenerate_or_outside_boxes_give_empty_masks():
    mask = np.ones([4, 4])
    for box in ([5, 5, 5, 9], [5, 9, 9, 2], [100, 100, 120, 120], [-30, -30, -20, -20]):
        assert not coco_utils.paste_instance_mask(mask, box, 32, 32).any()


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
            mask_api.decode(result["segmentation"]), reference_paste(mask, box, 40, 50)
        )
    # ShapeMask's masks span their outer boxes.
    _, results = coco_utils.predictions_to_coco_results(
        dict(predictions, detection_outer_boxes=np.asarray(outer, np.float32)), include_mask=True
    )
    np.testing.assert_array_equal(
        mask_api.decode(results[0]["segmentation"]),
        reference_paste(masks[0, 0], [4.0, 8.0, 32.0, 44.0], 40, 50),
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
