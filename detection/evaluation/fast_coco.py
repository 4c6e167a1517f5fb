"""COCOeval of the faster-coco-eval package: pycocotools' protocol with its loops in C++.

`eval.use_fast_coco_eval: true` makes the COCO evaluator score with this instead of
pycocotools' COCOeval (an optional extra: `pip install 'tpu-detection[fast-eval]'`). Same
inputs (the groundtruth dataset dict and the result list), same parameters, same
`evaluate / accumulate / summarize` and the same `stats` and `eval['precision' | 'recall']`
arrays, several times faster (bench/coco_eval.py).

How equal: on the test sets (crowds, images without groundtruth or without detections,
several classes, boxes and masks) the 12 numbers are those of pycocotools. The precision
arrays are computed in another order, so an entry can differ in its last bit (0.9999999999999998
against 1.0), and a mean of them, one of the 12 numbers, by ~1e-18; bench/coco_eval.py prints
the largest difference it sees.
"""

import importlib.util

PACKAGE = "faster-coco-eval"
INSTALL_HINT = "pip install 'tpu-detection[fast-eval]' (or pip install faster-coco-eval)"


def is_available():
    """Whether the faster-coco-eval package can be imported."""
    return importlib.util.find_spec("faster_coco_eval") is not None


def cocoeval(coco_gt, results, iou_type, print_function):
    """A faster-coco-eval COCOeval of `results` against `coco_gt`, not yet evaluated.

    Args:
      coco_gt: a pycocotools COCO; its `dataset` dict is read (not changed).
      results: COCO result dicts (`image_id`, `category_id`, `score`, and `bbox` or an RLE
        `segmentation`); they are copied, since loading adds fields.
      iou_type: 'bbox' or 'segm'.
      print_function: where the package's progress and summary lines go.

    Returns:
      An object with pycocotools' COCOeval interface (`params`, `evaluate()`, `accumulate()`,
      `summarize()`, `stats`, `eval`).

    Raises:
      ImportError: the package is not installed (the message says how to install it).
    """
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError as error:
        raise ImportError(
            f"eval.use_fast_coco_eval needs the {PACKAGE} package: {INSTALL_HINT}"
        ) from error
    gt = COCO(coco_gt.dataset, print_function=print_function)
    detections = gt.loadRes([dict(r) for r in results])
    return COCOeval_faster(gt, detections, iouType=iou_type, print_function=print_function)
