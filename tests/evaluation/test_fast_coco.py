"""faster-coco-eval's COCOeval (eval.use_fast_coco_eval) against pycocotools' on a random set.

250 images (a tenth without groundtruth, some without detections), 6 categories, 1 object in
15 a crowd, groundtruth areas that differ from the box areas (as COCO's mask areas do), boxes
of all three area ranges, jittered true positives, wrong-class and background detections.
The 12 numbers must agree to 1e-15: the precision arrays are accumulated in another order, so
a mean can differ in its last bit (detection/evaluation/fast_coco.py), and by nothing more.
"""

import contextlib
import copy
import io

import numpy as np
from pycocotools import coco as pycoco
from pycocotools import cocoeval

from detection.evaluation import fast_coco

NUM_CLASSES = 6


def _random_set(seed, num_images=250):
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        height, width = (int(v) for v in rng.integers(100, 500, size=2))
        images.append({"id": image_id, "height": height, "width": width})
        num = 0 if rng.uniform() < 0.1 else int(rng.integers(1, 12))
        for _ in range(num):
            w, h = rng.uniform(3, width * 0.7), rng.uniform(3, height * 0.7)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            category = int(rng.integers(1, NUM_CLASSES + 1))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h * rng.uniform(0.4, 1.0),
                    "iscrowd": int(rng.uniform() < 1 / 15),
                }
            )
            for _ in range(int(rng.integers(0, 4))):
                d = rng.normal(0, 0.12, size=4)
                wrong = rng.uniform() < 0.2
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": int(rng.integers(1, NUM_CLASSES + 1)) if wrong else category,
                        "bbox": [x + d[0] * w, y + d[1] * h, w * np.exp(d[2]), h * np.exp(d[3])],
                        "score": float(rng.uniform()),
                    }
                )
        if image_id % 7:  # every 7th image has no background detection (maybe none at all)
            for _ in range(int(rng.integers(1, 4))):
                w, h = rng.uniform(3, width / 2), rng.uniform(3, height / 2)
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": int(rng.integers(1, NUM_CLASSES + 1)),
                        "bbox": [rng.uniform(0, width - w), rng.uniform(0, height - h), w, h],
                        "score": float(rng.uniform()),
                    }
                )
    categories = [{"id": c, "name": f"class {c}"} for c in range(1, NUM_CLASSES + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _pycocotools_stats(dataset, results):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = pycoco.COCO()
        coco_gt.dataset = copy.deepcopy(dataset)
        coco_gt.createIndex()
        coco_eval = cocoeval.COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_gt, coco_eval


def test_the_12_numbers_equal_pycocotools():
    for seed in (0, 1):
        dataset, results = _random_set(seed)
        assert any(a["iscrowd"] for a in dataset["annotations"])
        with_objects = {a["image_id"] for a in dataset["annotations"]}
        assert len(with_objects) < len(dataset["images"])  # images without groundtruth
        coco_gt, expected = _pycocotools_stats(dataset, results)
        untouched = copy.deepcopy(coco_gt.dataset)
        fast = fast_coco.cocoeval(coco_gt, results, "bbox", print_function=lambda *args: None)
        fast.evaluate()
        fast.accumulate()
        fast.summarize()
        np.testing.assert_allclose(fast.stats[:12], expected.stats, rtol=0, atol=1e-15)
        assert 0.05 < expected.stats[0] < 0.95 and min(expected.stats) > 0  # all 12 defined
        # Per-category metrics read these arrays (coco_evaluator.category_stats).
        np.testing.assert_allclose(
            fast.eval["precision"], expected.eval["precision"], rtol=0, atol=1e-15
        )
        np.testing.assert_array_equal(fast.eval["recall"], expected.eval["recall"])
        assert coco_gt.dataset == untouched  # the groundtruth is read, not changed
