"""COCOEvaluator and the evaluator factory against pycocotools' COCOeval run directly.

A small COCO set (3 categories, crowd annotations, an image without groundtruth, an image
without detections, an annotated image that is never evaluated) is scored once by COCOeval on
hand-built JSON and once through COCOEvaluator.update() fed in padded batches; the 12 stats must
be equal. Boxes use quarter-pixel coordinates and scales whose products are exact in float32,
so the round trip original -> network input -> original is exact and IoUs are bit-identical.
"""

import contextlib
import io
import json
import types

import numpy as np
import pytest
from pycocotools import coco as pycoco
from pycocotools import cocoeval
from pycocotools import mask as mask_api

from detection.evaluation import coco_evaluator, factory, fast_coco
from detection.hyperparameters import ParamsError

# Real COCO ids: person and dog are PASCAL VOC classes, traffic light is not.
CATEGORIES = [
    {"id": 1, "name": "person"},
    {"id": 10, "name": "traffic light"},
    {"id": 18, "name": "dog"},
]
CATEGORY_IDS = [c["id"] for c in CATEGORIES]
# image id -> (height, width, (y_scale, x_scale), (y_offset, x_offset))
IMAGES = {
    11: (64, 96, (0.5, 0.5), (0.0, 0.0)),
    12: (128, 128, (1.25, 1.25), (4.0, 8.0)),
    13: (100, 80, (0.75, 2.0), (0.0, 2.0)),
    14: (72, 120, (1.0, 1.0), (0.0, 0.0)),
    15: (64, 64, (2.0, 2.0), (1.0, 3.0)),
    16: (96, 128, (1.0, 0.5), (0.0, 0.0)),
}
UNEVALUATED_IMAGE = 99  # in the annotation file, never passed to update()
NO_GT_IMAGE = 15
NO_DETECTION_IMAGE = 16
# Two padded batches of 4: -1 marks padding in batch 1; 77 is padding via `valid` in batch 2.
BATCHES = [[11, 12, -1, 13], [14, 15, 16, 77]]
VALID = [None, [True, True, True, False]]
MAX_DETECTIONS = 10
MAX_INSTANCES = 6
MASK_SIZE = 8


def quarter(x):
    return np.round(np.asarray(x, np.float64) * 4) / 4


def ellipse_mask(box, height, width):
    ymin, xmin, ymax, xmax = box
    y = np.arange(height)[:, None] + 0.5
    x = np.arange(width)[None, :] + 0.5
    cy, cx, ry, rx = (ymin + ymax) / 2, (xmin + xmax) / 2, (ymax - ymin) / 2, (xmax - xmin) / 2
    return (((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1).astype(np.uint8)


def reference_paste(mask, box, height, width):
    """Per-pixel bilinear sampling of the zero-bordered mask (as in test_coco_utils)."""
    mask_h, mask_w = mask.shape
    ymin, xmin, ymax, xmax = box
    padded = np.pad(np.asarray(mask, np.float64), 1)
    rows = np.clip((np.arange(height) + 0.5 - ymin) / (ymax - ymin) * mask_h + 0.5, 0, mask_h + 1)
    cols = np.clip((np.arange(width) + 0.5 - xmin) / (xmax - xmin) * mask_w + 0.5, 0, mask_w + 1)
    r0 = np.minimum(np.floor(rows).astype(int), mask_h)
    c0 = np.minimum(np.floor(cols).astype(int), mask_w)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    r0, c0 = r0[:, None], c0[None, :]
    value = (
        (1 - fr) * (1 - fc) * padded[r0, c0]
        + (1 - fr) * fc * padded[r0, c0 + 1]
        + fr * (1 - fc) * padded[r0 + 1, c0]
        + fr * fc * padded[r0 + 1, c0 + 1]
    )
    return (value >= 0.5).astype(np.uint8)


def random_box(rng, height, width, min_size=3.0):
    size_y = rng.uniform(min_size, height * 0.9)
    size_x = rng.uniform(min_size, width * 0.9)
    ymin = rng.uniform(0, height - size_y)
    xmin = rng.uniform(0, width - size_x)
    return quarter([ymin, xmin, ymin + size_y, xmin + size_x])


def make_scene(seed=0):
    """Groundtruth and detections (original pixels) for IMAGES plus UNEVALUATED_IMAGE."""
    rng = np.random.default_rng(seed)
    gts, dets = {}, {}
    for image_id, (height, width, _, _) in {**IMAGES, UNEVALUATED_IMAGE: (80, 80, 0, 0)}.items():
        gts[image_id] = []
        if image_id != NO_GT_IMAGE:
            for k in range(int(rng.integers(2, MAX_INSTANCES + 1))):
                box = random_box(rng, height, width)
                if (image_id, k) == (12, 0):  # one object large enough for APl / ARl
                    box = quarter([4, 6, 124.5, 126.25])
                mask = ellipse_mask(box, height, width)
                gts[image_id].append(
                    {
                        "box": box,
                        "class": int(rng.choice(CATEGORY_IDS)),
                        "crowd": int(k == 1 and image_id in (12, 14)),
                        "mask": mask,
                        "area": float(mask.sum()),
                    }
                )
        dets[image_id] = []
        if image_id == NO_DETECTION_IMAGE:
            continue
        for gt in gts[image_id]:
            for _ in range(int(rng.integers(0, 3))):
                jitter = rng.normal(0, 0.08, size=4) * np.tile(gt["box"][2:] - gt["box"][:2], 2)
                box = quarter(np.clip(gt["box"] + jitter, 0, [height, width] * 2))
                if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                    continue
                cls = gt["class"] if rng.uniform() < 0.8 else int(rng.choice(CATEGORY_IDS))
                dets[image_id].append({"box": box, "class": cls})
        for _ in range(int(rng.integers(1, 3))):
            dets[image_id].append(
                {"box": random_box(rng, height, width), "class": int(rng.choice(CATEGORY_IDS))}
            )
        dets[image_id] = dets[image_id][:MAX_DETECTIONS]
        for det in dets[image_id]:
            det["score"] = float(np.float32(rng.uniform(0.05, 1.0)))
            # A soft mask that roughly fills the box, plus noise.
            yy, xx = np.meshgrid(
                np.linspace(-1, 1, MASK_SIZE), np.linspace(-1, 1, MASK_SIZE), indexing="ij"
            )
            det["mask"] = np.clip(1.5 - (yy**2 + xx**2) + rng.normal(0, 0.15, yy.shape), 0, 1)
    return gts, dets


def xywh(box):
    return [float(box[1]), float(box[0]), float(box[3] - box[1]), float(box[2] - box[0])]


def rle(mask):
    encoded = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def gt_json(gts):
    sizes = {**{i: v[:2] for i, v in IMAGES.items()}, UNEVALUATED_IMAGE: (80, 80)}
    annotations = []
    for image_id, instances in gts.items():
        for gt in instances:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": gt["class"],
                    "bbox": xywh(gt["box"]),
                    "area": gt["area"],
                    "iscrowd": gt["crowd"],
                    "segmentation": rle(gt["mask"]),
                }
            )
    return {
        "images": [{"id": i, "height": h, "width": w} for i, (h, w) in sizes.items()],
        "annotations": annotations,
        "categories": CATEGORIES,
    }


def reference_results(dets, with_masks=False):
    results = []
    for image_id in IMAGES:
        height, width = IMAGES[image_id][:2]
        for det in dets[image_id]:
            result = {"image_id": image_id, "category_id": det["class"], "score": det["score"]}
            if with_masks:  # masks scored by their own area: no bbox in the result
                result["segmentation"] = rle(
                    reference_paste(det["mask"], det["box"], height, width)
                )
            else:
                result["bbox"] = xywh(det["box"])
            results.append(result)
    return results


def run_cocoeval(dataset, results, iou_type, image_ids=tuple(IMAGES), category_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = pycoco.COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes adds keys
        coco_eval = cocoeval.COCOeval(coco_gt, coco_dt, iou_type)
        coco_eval.params.imgIds = sorted(image_ids)
        if category_ids is not None:
            coco_eval.params.catIds = category_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [float(v) for v in coco_eval.stats]


def make_batches(gts, dets, rng, with_masks=False):
    """Padded prediction / groundtruth batches; padding entries are filled with junk."""
    batches = []
    for ids, valid in zip(BATCHES, VALID):
        b = len(ids)
        pred = {
            "source_id": np.array(ids, np.int64),
            "image_info": np.zeros([b, 4, 2], np.float32),
            "num_detections": np.zeros([b], np.int32),
            "detection_boxes": rng.uniform(0, 50, [b, MAX_DETECTIONS, 4]).astype(np.float32),
            "detection_classes": np.ones([b, MAX_DETECTIONS], np.int32),
            "detection_scores": np.full([b, MAX_DETECTIONS], 0.99, np.float32),
            "detection_masks": np.ones([b, MAX_DETECTIONS, MASK_SIZE, MASK_SIZE], np.float32),
        }
        max_hw = max(v[0] for v in IMAGES.values()), max(v[1] for v in IMAGES.values())
        gt = {
            "source_id": np.array(ids, np.int64),
            "height": np.full([b], 50, np.int32),
            "width": np.full([b], 50, np.int32),
            "num_detections": np.full([b], 2, np.int32),
            "boxes": np.full([b, MAX_INSTANCES, 4], -1, np.float32),
            "classes": np.full([b, MAX_INSTANCES], -1, np.int32),
            "areas": np.full([b, MAX_INSTANCES], -1, np.float32),
            "is_crowds": np.full([b, MAX_INSTANCES], -1, np.int32),
            "masks": np.zeros([b, MAX_INSTANCES, *max_hw], np.uint8),
        }
        gt["boxes"][:, :2] = [0, 0, 10, 10]
        gt["classes"][:, :2] = 1
        if valid is not None:
            pred["valid"] = np.array(valid)
        for i, image_id in enumerate(ids):
            pred["image_info"][i] = [[50, 50], [50, 50], [1, 1], [0, 0]]
            pred["num_detections"][i] = 3  # junk for padding entries
            if image_id not in IMAGES:
                continue
            height, width, scale, offset = IMAGES[image_id]
            pred["image_info"][i] = [
                [height, width],
                [round(height * scale[0]), round(width * scale[1])],
                scale,
                offset,
            ]
            pred["num_detections"][i] = len(dets[image_id])
            for j, det in enumerate(dets[image_id]):
                pred["detection_boxes"][i, j] = det["box"] * np.tile(scale, 2) - np.tile(offset, 2)
                pred["detection_classes"][i, j] = det["class"]
                pred["detection_scores"][i, j] = det["score"]
                pred["detection_masks"][i, j] = det["mask"]
            gt["height"][i], gt["width"][i] = height, width
            gt["num_detections"][i] = len(gts[image_id])
            for j, instance in enumerate(gts[image_id]):
                gt["boxes"][i, j] = instance["box"]
                gt["classes"][i, j] = instance["class"]
                gt["areas"][i, j] = instance["area"]
                gt["is_crowds"][i, j] = instance["crowd"]
                gt["masks"][i, j, :height, :width] = instance["mask"]
        if not with_masks:
            del pred["detection_masks"], gt["masks"]
        batches.append((pred, gt))
    return batches


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    gts, dets = make_scene()
    dataset = gt_json(gts)
    path = tmp_path_factory.mktemp("coco") / "instances.json"
    path.write_text(json.dumps(dataset))
    return {"gts": gts, "dets": dets, "dataset": dataset, "path": str(path)}


def evaluate(evaluator, batches, use_groundtruths=True):
    for pred, gt in batches:
        evaluator.update(pred, gt if use_groundtruths else None)
    return evaluator.evaluate()


def test_scene_covers_the_interesting_cases(scene):
    annotations = scene["dataset"]["annotations"]
    assert any(a["iscrowd"] for a in annotations)
    assert not scene["gts"][NO_GT_IMAGE] and scene["dets"][NO_GT_IMAGE]
    assert scene["gts"][NO_DETECTION_IMAGE] and not scene["dets"][NO_DETECTION_IMAGE]
    assert {a["category_id"] for a in annotations} == set(CATEGORY_IDS)
    areas = [a["area"] for a in annotations]
    assert min(areas) < 32**2 and any(32**2 < a < 96**2 for a in areas)
    assert max(areas) > 96**2


def test_box_metrics_equal_cocoeval(scene):
    expected = run_cocoeval(scene["dataset"], reference_results(scene["dets"]), "bbox")
    evaluator = coco_evaluator.COCOEvaluator(annotation_file=scene["path"])
    metrics = evaluate(
        evaluator,
        make_batches(scene["gts"], scene["dets"], np.random.default_rng(5)),
        use_groundtruths=False,
    )
    assert list(metrics) == list(coco_evaluator.METRIC_NAMES)
    assert [metrics[k] for k in coco_evaluator.METRIC_NAMES] == expected
    assert evaluator.num_images == len(IMAGES)
    assert 0 < metrics["AP"] < 1
    # The unevaluated image's groundtruth must not count as missed: including it changes AR.
    with_extra = run_cocoeval(
        scene["dataset"],
        reference_results(scene["dets"]),
        "bbox",
        image_ids=(*IMAGES, UNEVALUATED_IMAGE),
    )
    assert with_extra[8] < expected[8]


def test_groundtruth_from_batches_equals_annotation_file(scene):
    batches = make_batches(scene["gts"], scene["dets"], np.random.default_rng(6))
    from_file = evaluate(coco_evaluator.COCOEvaluator(annotation_file=scene["path"]), batches)
    from_batches = evaluate(coco_evaluator.COCOEvaluator(), batches)
    assert from_batches == from_file
    with_num_classes = evaluate(coco_evaluator.COCOEvaluator(num_classes=91), batches)
    assert with_num_classes == from_file


def test_mask_metrics_equal_cocoeval(scene):
    dataset = scene["dataset"]
    expected_box = run_cocoeval(dataset, reference_results(scene["dets"]), "bbox")
    expected_mask = run_cocoeval(dataset, reference_results(scene["dets"], True), "segm")
    assert expected_mask != expected_box
    batches = make_batches(scene["gts"], scene["dets"], np.random.default_rng(7), True)
    for evaluator in (
        coco_evaluator.COCOEvaluator(scene["path"], include_mask=True),
        coco_evaluator.COCOEvaluator(include_mask=True),
    ):
        metrics = evaluate(evaluator, batches)
        assert [metrics[k] for k in coco_evaluator.METRIC_NAMES] == expected_box
        assert [metrics["mask_" + k] for k in coco_evaluator.METRIC_NAMES] == expected_mask
    # Restricting mask metrics to some categories (ShapeMask's VOC split) leaves boxes alone.
    restricted = coco_evaluator.COCOEvaluator(
        scene["path"], include_mask=True, mask_category_ids=[1, 18]
    )
    metrics = evaluate(restricted, batches)
    assert [metrics["mask_" + k] for k in coco_evaluator.METRIC_NAMES] == run_cocoeval(
        dataset, reference_results(scene["dets"], True), "segm", category_ids=[1, 18]
    )
    assert [metrics[k] for k in coco_evaluator.METRIC_NAMES] == expected_box


def test_per_category_metrics_equal_single_category_cocoeval(scene):
    evaluator = coco_evaluator.COCOEvaluator(scene["path"], per_category_metrics=True)
    metrics = evaluate(
        evaluator, make_batches(scene["gts"], scene["dets"], np.random.default_rng(8))
    )
    for category in CATEGORIES:
        expected = run_cocoeval(
            scene["dataset"],
            reference_results(scene["dets"]),
            "bbox",
            category_ids=[category["id"]],
        )
        got = [metrics[f"{k}_/{category['name']}"] for k in coco_evaluator.METRIC_NAMES]
        assert got == expected, category
    assert len(metrics) == 12 * (1 + len(CATEGORIES))


def test_no_detections_gives_zero_ap(scene):
    evaluator = coco_evaluator.COCOEvaluator(
        scene["path"], include_mask=True, per_category_metrics=True
    )
    for pred, _ in make_batches(scene["gts"], scene["dets"], np.random.default_rng(9), True):
        evaluator.update(dict(pred, num_detections=np.zeros_like(pred["num_detections"])))
    metrics = evaluator.evaluate()
    for prefix in ("", "mask_"):
        for name in ("AP", "AP50", "AP75", "APs", "ARmax1", "ARmax100", "ARs"):
            assert metrics[prefix + name] == 0.0
    # -1 only where COCOeval has no groundtruth to average over.
    assert set(metrics.values()) <= {0.0, -1.0}
    assert metrics["APl"] == 0.0 and metrics["mask_ARl"] == 0.0
    assert metrics["AP_/dog"] == 0.0


def test_dump_predictions_loads_and_scores_the_same(scene, tmp_path):
    evaluator = coco_evaluator.COCOEvaluator(scene["path"], include_mask=True)
    metrics = evaluate(
        evaluator, make_batches(scene["gts"], scene["dets"], np.random.default_rng(10), True)
    )
    path = tmp_path / "out" / "detections.json"
    evaluator.dump_predictions(path)
    dumped = json.loads(path.read_text())
    expected = reference_results(scene["dets"])
    assert [
        {k: r[k] for k in ("image_id", "category_id", "bbox", "score")} for r in dumped
    ] == expected
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = pycoco.COCO(scene["path"])
        coco_dt = coco_gt.loadRes(str(path))
        coco_eval = cocoeval.COCOeval(coco_gt, coco_dt, "bbox")
        coco_eval.params.imgIds = sorted(IMAGES)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    assert [float(v) for v in coco_eval.stats] == [metrics[k] for k in coco_evaluator.METRIC_NAMES]
    assert len(coco_dt.getAnnIds()) == len(expected)
    assert all("segmentation" in r for r in dumped)


def test_reset_and_errors(scene):
    batches = make_batches(scene["gts"], scene["dets"], np.random.default_rng(11))
    evaluator = coco_evaluator.COCOEvaluator(scene["path"])
    with pytest.raises(RuntimeError, match="before any update"):
        evaluator.evaluate()
    first = evaluate(evaluator, batches)
    with pytest.raises(ValueError, match=r"\[11, 12, 13\] were already evaluated"):
        evaluator.update(*batches[0])
    evaluator.reset()
    assert evaluator.num_images == 0
    assert evaluate(evaluator, batches) == first
    pred, gt = batches[0]
    with pytest.raises(ValueError, match=r"\[123\] are not in annotation file"):
        coco_evaluator.COCOEvaluator(scene["path"]).update(
            dict(pred, source_id=np.array([11, 12, -1, 123]))
        )
    without_file = coco_evaluator.COCOEvaluator()
    with pytest.raises(ValueError, match="needs the groundtruths"):
        without_file.update(pred)
    with pytest.raises(ValueError, match="does not match"):
        without_file.update(pred, dict(gt, source_id=np.array([11, 13, -1, 12])))
    with pytest.raises(ValueError, match="masks"):
        coco_evaluator.COCOEvaluator(include_mask=True).update(
            *make_batches(scene["gts"], scene["dets"], np.random.default_rng(0), True)[0][:1], gt
        )
    with pytest.raises(ValueError, match="num_classes"):
        coco_evaluator.COCOEvaluator(num_classes=1)


def eval_params(**overrides):
    values = {
        "type": "box",
        "use_json_file": True,
        "val_json_file": "",
        "per_category_metrics": False,
        "use_fast_coco_eval": False,
    }
    values.update(overrides)
    return types.SimpleNamespace(eval=types.SimpleNamespace(**values))


def test_factory(scene):
    batches = make_batches(scene["gts"], scene["dets"], np.random.default_rng(12), True)
    box = factory.evaluator_from_params(eval_params(val_json_file=scene["path"]))
    assert set(evaluate(box, batches)) == set(coco_evaluator.METRIC_NAMES)
    mask = factory.evaluator_from_params(
        eval_params(type="box_and_mask", val_json_file=scene["path"], per_category_metrics=True)
    )
    metrics = evaluate(mask, batches)
    assert "mask_AP" in metrics and "mask_AP_/traffic light" in metrics
    shapemask = factory.evaluator_from_params(
        eval_params(
            type="shapemask_box_and_mask", val_json_file=scene["path"], mask_eval_class="voc"
        )
    )
    metrics = evaluate(shapemask, batches)
    masks = reference_results(scene["dets"], True)
    assert (
        metrics["mask_AP"] == run_cocoeval(scene["dataset"], masks, "segm", category_ids=[1, 18])[0]
    )
    assert (
        metrics["AP"] == run_cocoeval(scene["dataset"], reference_results(scene["dets"]), "bbox")[0]
    )
    nonvoc = factory.evaluator_from_params(
        eval_params(
            type="shapemask_box_and_mask",
            val_json_file=scene["path"],
            mask_eval_class="nonvoc",
            per_category_metrics=True,
        )
    )
    metrics = evaluate(nonvoc, batches)
    assert metrics["mask_AP"] == run_cocoeval(scene["dataset"], masks, "segm", category_ids=[10])[0]
    assert metrics["mask_AP"] == metrics["mask_AP_/traffic light"]
    assert "mask_AP_/dog" not in metrics and "AP_/dog" in metrics
    from_batches = factory.evaluator_from_params(eval_params(use_json_file=False))
    with pytest.raises(ValueError, match="needs the groundtruths"):
        from_batches.update(batches[0][0])
    with pytest.raises(ParamsError, match="eval.type='keypoints'.*available: box, "):
        factory.evaluator_from_params(eval_params(type="keypoints"))
    with pytest.raises(ParamsError, match="val_json_file"):
        factory.evaluator_from_params(eval_params())
    with pytest.raises(ParamsError, match="'dogs'"):
        factory.evaluator_from_params(
            eval_params(
                type="shapemask_box_and_mask", val_json_file=scene["path"], mask_eval_class="dogs"
            )
        )


def test_fast_coco_eval_gives_the_numbers_of_pycocotools(scene):
    """faster-coco-eval (eval.use_fast_coco_eval) on the scene: crowds, an image without
    groundtruth, one without detections, an unevaluated annotated image, three categories,
    boxes, masks, one category's masks alone, per-category metrics. Its precision arrays are
    summed in another order, so a number may differ in its last bit (fast_coco.py): the
    tolerance is 1e-15, far below any printed digit, and no more."""
    dataset = scene["dataset"]
    batches = make_batches(scene["gts"], scene["dets"], np.random.default_rng(13), True)
    expected_box = run_cocoeval(dataset, reference_results(scene["dets"]), "bbox")
    expected_mask = run_cocoeval(dataset, reference_results(scene["dets"], True), "segm")
    for annotation_file in (scene["path"], None):
        fast = coco_evaluator.COCOEvaluator(
            annotation_file,
            include_mask=True,
            per_category_metrics=True,
            use_fast_coco_eval=True,
        )
        metrics = evaluate(fast, batches)
        got_box = [metrics[k] for k in coco_evaluator.METRIC_NAMES]
        got_mask = [metrics["mask_" + k] for k in coco_evaluator.METRIC_NAMES]
        np.testing.assert_allclose(got_box, expected_box, rtol=0, atol=1e-15)
        np.testing.assert_allclose(got_mask, expected_mask, rtol=0, atol=1e-15)
        for category in CATEGORIES:
            expected = run_cocoeval(
                dataset, reference_results(scene["dets"]), "bbox", category_ids=[category["id"]]
            )
            # Groundtruth from batches has no category names: keys use the ids.
            name = category["name"] if annotation_file else str(category["id"])
            got = [metrics[f"{k}_/{name}"] for k in coco_evaluator.METRIC_NAMES]
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    restricted = coco_evaluator.COCOEvaluator(
        scene["path"], include_mask=True, mask_category_ids=[10], use_fast_coco_eval=True
    )
    metrics = evaluate(restricted, batches)
    np.testing.assert_allclose(
        [metrics["mask_" + k] for k in coco_evaluator.METRIC_NAMES],
        run_cocoeval(dataset, reference_results(scene["dets"], True), "segm", category_ids=[10]),
        rtol=0,
        atol=1e-15,
    )
    # No detections at all: both give APs of 0 (and -1 where there is no groundtruth).
    nothing = [(dict(p, num_detections=np.zeros_like(p["num_detections"])), g) for p, g in batches]
    with_fast = evaluate(coco_evaluator.COCOEvaluator(use_fast_coco_eval=True), nothing)
    assert with_fast == evaluate(coco_evaluator.COCOEvaluator(), nothing)
    assert with_fast["AP"] == 0.0


def test_factory_fast_coco_eval_key(scene, monkeypatch):
    batches = make_batches(scene["gts"], scene["dets"], np.random.default_rng(14))
    calls = []
    scored_by_fast = fast_coco.cocoeval

    def counted(*args, **kwargs):
        calls.append(args[2])
        return scored_by_fast(*args, **kwargs)

    monkeypatch.setattr(fast_coco, "cocoeval", counted)
    evaluator = factory.evaluator_from_params(
        eval_params(val_json_file=scene["path"], use_fast_coco_eval=True)
    )
    metrics = evaluate(evaluator, batches)
    assert calls == ["bbox"]
    np.testing.assert_allclose(
        [metrics[k] for k in coco_evaluator.METRIC_NAMES],
        run_cocoeval(scene["dataset"], reference_results(scene["dets"]), "bbox"),
        rtol=0,
        atol=1e-15,
    )
    evaluate(factory.evaluator_from_params(eval_params(val_json_file=scene["path"])), batches)
    assert calls == ["bbox"]  # pycocotools unless the key asks
    monkeypatch.setattr(fast_coco, "is_available", lambda: False)
    with pytest.raises(ParamsError, match="eval.use_fast_coco_eval.*faster-coco-eval"):
        factory.evaluator_from_params(
            eval_params(val_json_file=scene["path"], use_fast_coco_eval=True)
        )
    with pytest.raises(ImportError, match="eval.use_fast_coco_eval.*fast-eval"):
        coco_evaluator.COCOEvaluator(scene["path"], use_fast_coco_eval=True)
