"""`eval.type` -> the evaluator of a run (the only module here that reads params).

To add an evaluator: write it in this package with `update(predictions, groundtruths)`,
`evaluate()` and `reset()` (see `detection.core.model_fn`), add a builder `_name(eval_params)`
below and list it in `_EVALUATORS` under its `eval.type`. `eval.type: customized` (the
original's "the model's own metric") is resolved by the model `type` in `_CUSTOMIZED`.
"""

from detection.evaluation import (
    classification_accuracy,
    coco_evaluator,
    fast_coco,
    segmentation_iou,
)
from detection.hyperparameters import ParamsError, registry
from detection.ops import class_splits


def _annotation_file(eval_params):
    if not eval_params.use_json_file:
        return None
    if not eval_params.val_json_file:
        raise ParamsError(
            "eval.use_json_file is true but eval.val_json_file is "
            f"{eval_params.val_json_file!r}; set it, or set eval.use_json_file: false to build "
            "the groundtruth from the eval TFRecords"
        )
    return eval_params.val_json_file


def _coco(eval_params, include_mask, mask_category_ids=None):
    use_fast = bool(eval_params.use_fast_coco_eval)
    if use_fast and not fast_coco.is_available():
        raise ParamsError(
            f"eval.use_fast_coco_eval is true but the {fast_coco.PACKAGE} package is not "
            f"installed: {fast_coco.INSTALL_HINT}, or set eval.use_fast_coco_eval: false"
        )
    return coco_evaluator.COCOEvaluator(
        annotation_file=_annotation_file(eval_params),
        include_mask=include_mask,
        per_category_metrics=bool(eval_params.per_category_metrics),
        mask_category_ids=mask_category_ids,
        use_fast_coco_eval=use_fast,
    )


def _box(eval_params):
    return _coco(eval_params, include_mask=False)


def _box_and_mask(eval_params):
    return _coco(eval_params, include_mask=True)


def _shapemask_box_and_mask(eval_params):
    # Masks of these categories only (ShapeMask's partially supervised evaluation: masks
    # trained on one split, evaluated on the other); boxes of every category.
    try:
        category_ids = class_splits.split_category_ids(
            getattr(eval_params, "mask_eval_class", "all"), "eval.mask_eval_class"
        )
    except ValueError as error:
        raise ParamsError(str(error)) from None
    return _coco(eval_params, include_mask=True, mask_category_ids=category_ids)


_EVALUATORS = {
    "box": _box,
    "box_and_mask": _box_and_mask,
    "shapemask_box_and_mask": _shapemask_box_and_mask,
}


def _top_k_accuracy(params):
    return classification_accuracy.ClassificationAccuracy(top_k=(1, 5))


def _mean_iou(params):
    return segmentation_iou.MeanIoU(params.architecture.num_classes)


# Builders of the whole params tree, by model type.
_CUSTOMIZED = {"classification": _top_k_accuracy, "segmentation": _mean_iou}


def evaluator_from_params(params):
    """Returns the evaluator of `eval.type` configured by the `eval` section.

    The COCO evaluators read `use_json_file`, `val_json_file`, `per_category_metrics`,
    `use_fast_coco_eval` (faster-coco-eval's COCOeval instead of pycocotools'), and for
    ShapeMask `mask_eval_class` ('all', 'voc', 'nonvoc', or comma-separated category ids).

    `customized` is top-1/top-5 accuracy for `classification` and mean IoU for `segmentation`.

    Raises:
      ParamsError: unknown `eval.type` or `mask_eval_class`, `use_json_file` without a
        `val_json_file`, or `use_fast_coco_eval` without the faster-coco-eval package.
    """
    if params.eval.type == "customized":
        return registry.lookup(_CUSTOMIZED, params.type, "eval.type=customized with type")(params)
    return registry.lookup(_EVALUATORS, params.eval.type, "eval.type")(params.eval)
