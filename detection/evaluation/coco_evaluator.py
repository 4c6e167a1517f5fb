"""COCO box (and mask) AP/AR over a whole eval set, computed by pycocotools' COCOeval.

Usage from an eval loop:

    evaluator = COCOEvaluator(annotation_file='instances_val2017.json')
    for features, labels in dataset:
        outputs = eval_step(features, labels)          # numpy dicts
        evaluator.update(outputs, labels.get('groundtruths'))
    metrics = evaluator.evaluate()                     # {'AP': ..., 'AP50': ..., ...}
    evaluator.reset()

Metric values are COCOeval's `stats` as is: fractions in [0, 1], or -1.0 where COCOeval has
nothing to average (no groundtruth in that area range, or for a per-category metric, no
groundtruth of that category among the evaluated images). With groundtruth present and no
detections at all the APs are 0.0.
"""

import logging

import numpy as np
from pycocotools import cocoeval

from detection.evaluation import coco_utils, fast_coco

logger = logging.getLogger(__name__)

METRIC_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "ARmax1",
    "ARmax10",
    "ARmax100",
    "ARs",
    "ARm",
    "ARl",
)

# (is_precision, iou_threshold or None for the mean over 0.50:0.95, area range, max detections)
# per entry of METRIC_NAMES: the definitions of COCOeval.summarize for detection.
_STAT_DEFINITIONS = (
    (True, None, "all", 100),
    (True, 0.5, "all", 100),
    (True, 0.75, "all", 100),
    (True, None, "small", 100),
    (True, None, "medium", 100),
    (True, None, "large", 100),
    (False, None, "all", 1),
    (False, None, "all", 10),
    (False, None, "all", 100),
    (False, None, "small", 100),
    (False, None, "medium", 100),
    (False, None, "large", 100),
)


def category_stats(coco_eval, category_index):
    """The 12 summary statistics restricted to one category of an accumulated COCOeval.

    Args:
      coco_eval: a COCOeval after `accumulate()`, with default area ranges and maxDets.
      category_index: index into `coco_eval.params.catIds`.

    Returns:
      list of 12 floats in METRIC_NAMES order (-1.0 where undefined), equal to what
      `summarize()` gives when `params.catIds` is just that category.
    """
    params = coco_eval.params
    precision = coco_eval.eval["precision"][:, :, category_index]  # [T, R, A, M]
    recall = coco_eval.eval["recall"][:, category_index]  # [T, A, M]
    stats = []
    for is_precision, iou, area, max_dets in _STAT_DEFINITIONS:
        a = params.areaRngLbl.index(area)
        m = params.maxDets.index(max_dets)
        values = precision[..., a, m] if is_precision else recall[..., a, m]
        if iou is not None:
            values = values[np.where(params.iouThrs == iou)[0]]
        values = values[values > -1]
        stats.append(float(np.mean(values)) if values.size else -1.0)
    return stats


class COCOEvaluator:
    """Accumulates detections batch by batch and scores them with COCOeval.

    Groundtruth comes either from a COCO annotation JSON (restricted to the evaluated images) or,
    without one, from the `groundtruths` batches passed to `update` (CONVENTIONS 'Eval
    groundtruths'). Mask AP treats a detection's size as its mask area (results are scored
    without their box, as detectron2 does), so small/medium/large use the same definition for
    detections as for the groundtruth.
    """

    def __init__(
        self,
        annotation_file=None,
        include_mask=False,
        per_category_metrics=False,
        num_classes=None,
        category_names=None,
        mask_category_ids=None,
        use_fast_coco_eval=False,
    ):
        """Builds the evaluator.

        Args:
          annotation_file: path of a COCO annotation JSON, or None to build the groundtruth from
            the batches given to `update`.
          include_mask: also compute mask metrics (`mask_AP`, ...) from `detection_masks`.
          per_category_metrics: also report `<metric>_/<category name>` for every category.
          num_classes: optional, without annotation file: declare categories 1..num_classes-1
            (COCO convention, class 0 is background) instead of the classes seen.
          category_names: optional {category id: name} for per-category keys when the
            groundtruth has no names (annotation files carry their own).
          mask_category_ids: optional category ids to restrict the mask metrics to (ShapeMask's
            VOC / non-VOC split); box metrics always use all categories.

        Raises:
          FileNotFoundError / ValueError: unreadable annotation file or inconsistent arguments.
        """
        if num_classes is not None and (int(num_classes) != num_classes or num_classes < 2):
            raise ValueError(
                f"num_classes must be an int >= 2 (background included), got {num_classes!r}."
            )
        if mask_category_ids is not None and not include_mask:
            raise ValueError("mask_category_ids is given but include_mask is False.")
        if use_fast_coco_eval and not fast_coco.is_available():
            raise ImportError(
                f"eval.use_fast_coco_eval needs the {fast_coco.PACKAGE} package: "
                f"{fast_coco.INSTALL_HINT}"
            )
        self._use_fast_coco_eval = bool(use_fast_coco_eval)
        self._annotation_file = annotation_file
        self._coco_gt = (
            coco_utils.load_coco_json(annotation_file) if annotation_file is not None else None
        )
        self._include_mask = bool(include_mask)
        self._per_category_metrics = bool(per_category_metrics)
        self._num_classes = None if num_classes is None else int(num_classes)
        self._category_names = dict(category_names or {})
        self._mask_category_ids = (
            None if mask_category_ids is None else sorted(int(c) for c in mask_category_ids)
        )
        self.reset()

    def reset(self):
        """Forgets all accumulated images, detections and groundtruths."""
        self._image_ids = set()
        self._results = []
        self._gt_images = []
        self._gt_annotations = []

    @property
    def num_images(self):
        """Number of distinct real images accumulated so far."""
        return len(self._image_ids)

    def update(self, predictions, groundtruths=None):
        """Adds one batch.

        Args:
          predictions: dict of numpy arrays (CONVENTIONS 'Detection predictions'):
            `source_id [b]`, `image_info [b, 4, 2]`, `num_detections [b]`,
            `detection_boxes [b, K, 4]` (network-input pixels, yxyx), `detection_classes [b, K]`,
            `detection_scores [b, K]`, optional `valid [b]` bool; with masks
            `detection_masks [b, K, mask_h, mask_w]` (and optional `detection_outer_boxes`).
            Entries with source_id -1 or valid False are padding and skipped.
          groundtruths: dict of numpy arrays (CONVENTIONS 'Eval groundtruths'), required
            without annotation file (plus `masks [b, M, H, W]` for mask metrics); ignored with one.

        Raises:
          ValueError: missing keys, bad shapes, an image id seen before, an image id absent from
            the annotation file, or groundtruth ids that differ from the prediction ids.
        """
        image_ids, results = coco_utils.predictions_to_coco_results(
            predictions, include_mask=self._include_mask
        )
        seen, repeated = set(), set()
        for image_id in image_ids:
            if image_id in self._image_ids or image_id in seen:
                repeated.add(image_id)
            seen.add(image_id)
        if repeated:
            raise ValueError(
                f"Image ids {sorted(repeated)} were already evaluated; mark padding "
                f"batch entries with source_id -1 or valid=False."
            )

        gt_images, gt_annotations = [], []
        if self._coco_gt is not None:
            unknown = sorted(i for i in image_ids if i not in self._coco_gt.imgs)
            if unknown:
                raise ValueError(
                    f"Image ids {unknown[:10]} are not in annotation file "
                    f"{self._annotation_file!r}."
                )
        else:
            if groundtruths is None:
                raise ValueError(
                    "COCOEvaluator has no annotation_file, so update() needs the "
                    "groundtruths of each batch."
                )
            if "source_id" not in groundtruths:
                raise ValueError(
                    f"groundtruths is missing key source_id; got keys {sorted(groundtruths)}."
                )
            keep = coco_utils.valid_entries(
                np.asarray(predictions["source_id"]), predictions.get("valid")
            )
            gt_ids = np.asarray(groundtruths["source_id"])
            if gt_ids.shape != keep.shape or not np.array_equal(
                gt_ids[keep], np.asarray(predictions["source_id"])[keep]
            ):
                raise ValueError(
                    f"groundtruths source_id {gt_ids.tolist()} does not match "
                    f"predictions source_id "
                    f"{np.asarray(predictions['source_id']).tolist()}."
                )
            gt_images, gt_annotations = coco_utils.groundtruths_to_coco_images_and_annotations(
                groundtruths, keep=keep, include_mask=self._include_mask
            )

        self._image_ids.update(image_ids)
        self._results.extend(results)
        self._gt_images.extend(gt_images)
        self._gt_annotations.extend(gt_annotations)

    def _groundtruth(self):
        if self._coco_gt is not None:
            return self._coco_gt
        if self._num_classes is not None:
            category_ids = range(1, self._num_classes)
        elif self._category_names:
            category_ids = self._category_names
        else:
            category_ids = {a["category_id"] for a in self._gt_annotations}
        dataset = coco_utils.coco_dataset(
            self._gt_images, self._gt_annotations, category_ids, self._category_names
        )
        return coco_utils.coco_from_dataset(dataset)

    def evaluate(self):
        """Scores everything accumulated since the last `reset()` (state is kept).

        Returns:
          dict of floats: METRIC_NAMES; `mask_` + METRIC_NAMES with include_mask; with
          per_category_metrics also `<metric>_/<category name>` (and `mask_<metric>_/<name>`).

        Raises:
          RuntimeError: if no real image was accumulated.
        """
        if not self._image_ids:
            raise RuntimeError(
                "COCOEvaluator.evaluate() called before any update() with real "
                "(non-padding) images."
            )
        coco_gt = self._groundtruth()
        image_ids = sorted(self._image_ids)
        known = set(coco_gt.getCatIds())
        unknown = sorted({r["category_id"] for r in self._results} - known)
        if unknown:
            logger.warning(
                "Detections of category ids %s are ignored: the groundtruth does not declare them.",
                unknown,
            )

        box_results = [{k: v for k, v in r.items() if k != "segmentation"} for r in self._results]
        metrics = self._run(coco_gt, box_results, "bbox", image_ids, None, prefix="")
        if self._include_mask:
            mask_results = [{k: v for k, v in r.items() if k != "bbox"} for r in self._results]
            metrics.update(
                self._run(
                    coco_gt,
                    mask_results,
                    "segm",
                    image_ids,
                    self._mask_category_ids,
                    prefix="mask_",
                )
            )
        return metrics

    def _run(self, coco_gt, results, iou_type, image_ids, category_ids, prefix):
        if self._use_fast_coco_eval:
            coco_eval = fast_coco.cocoeval(coco_gt, results, iou_type, logger.debug)
        else:
            coco_dt = coco_utils.load_results(coco_gt, results)
            coco_eval = cocoeval.COCOeval(coco_gt, coco_dt, iouType=iou_type)
        coco_eval.params.imgIds = image_ids
        if category_ids is not None:
            coco_eval.params.catIds = category_ids
        with coco_utils.quiet_stdout(logger):
            coco_eval.evaluate()
            coco_eval.accumulate()
        logger.info("COCO %s metrics over %d images:", iou_type, len(image_ids))
        if self._use_fast_coco_eval:
            coco_eval.print_function = logger.info
        with coco_utils.quiet_stdout(logger, logging.INFO):
            coco_eval.summarize()
        metrics = {prefix + name: float(v) for name, v in zip(METRIC_NAMES, coco_eval.stats)}
        if self._per_category_metrics:
            categories = {
                c["id"]: c.get("name", str(c["id"])) for c in coco_gt.loadCats(coco_gt.getCatIds())
            }
            for k, category_id in enumerate(coco_eval.params.catIds):
                if category_id not in categories:
                    continue  # a mask_category_ids entry the groundtruth does not declare
                name = categories[category_id]
                for metric, value in zip(METRIC_NAMES, category_stats(coco_eval, k)):
                    metrics[f"{prefix}{metric}_/{name}"] = value
        return metrics

    def dump_predictions(self, path):
        """Writes the accumulated detections as a COCO results JSON (original pixels).

        Entries have `image_id, category_id, bbox [x, y, w, h], score` and, with include_mask,
        `segmentation` as compressed RLE; `COCO.loadRes(path)` reads the file.
        """
        coco_utils.dump_results(self._results, path)
