"""Builds the evaluator named by `params.eval` (the only module here that reads params)."""

from detection.evaluation import coco_evaluator

# params.eval.type -> whether mask metrics are computed.
_INCLUDE_MASK = {
    "box": False,
    "box_and_mask": True,
    "shapemask_box_and_mask": True,
}

# The 20 PASCAL VOC classes as COCO category ids, for ShapeMask's partially supervised
# evaluation (masks trained on one split, evaluated on the other).
VOC_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 9, 16, 17, 18, 19, 20, 21, 44, 62, 63, 64, 67, 72)
NON_VOC_CATEGORY_IDS = tuple(c for c in range(1, 91) if c not in VOC_CATEGORY_IDS)
_MASK_EVAL_CLASSES = {"all": None, "voc": VOC_CATEGORY_IDS, "nonvoc": NON_VOC_CATEGORY_IDS}


def evaluator_from_params(params):
    """Returns a COCOEvaluator configured by `params.eval`.

    Reads `params.eval.type` ('box', 'box_and_mask', 'shapemask_box_and_mask'),
    `use_json_file`, `val_json_file`, `per_category_metrics`, and for ShapeMask
    `mask_eval_class` ('all', 'voc', 'nonvoc'; 'all' when absent).

    Raises:
      ValueError: unknown `type` or `mask_eval_class`, or `use_json_file` without a
        `val_json_file`.
    """
    eval_params = params.eval
    eval_type = eval_params.type
    if eval_type not in _INCLUDE_MASK:
        raise ValueError(
            f"Unknown params.eval.type {eval_type!r}; expected one of {sorted(_INCLUDE_MASK)}."
        )
    annotation_file = None
    if eval_params.use_json_file:
        if not eval_params.val_json_file:
            raise ValueError(
                "params.eval.use_json_file is true but params.eval.val_json_file "
                f"is {eval_params.val_json_file!r}."
            )
        annotation_file = eval_params.val_json_file
    mask_category_ids = None
    if eval_type == "shapemask_box_and_mask":
        mask_eval_class = getattr(eval_params, "mask_eval_class", "all")
        if mask_eval_class not in _MASK_EVAL_CLASSES:
            raise ValueError(
                f"Unknown params.eval.mask_eval_class {mask_eval_class!r}; expected "
                f"one of {sorted(_MASK_EVAL_CLASSES)}."
            )
        mask_category_ids = _MASK_EVAL_CLASSES[mask_eval_class]
    return coco_evaluator.COCOEvaluator(
        annotation_file=annotation_file,
        include_mask=_INCLUDE_MASK[eval_type],
        per_category_metrics=bool(eval_params.per_category_metrics),
        mask_category_ids=mask_category_ids,
    )
