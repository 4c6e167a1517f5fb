"""Class splits of ShapeMask's partially supervised setting (`mask_train_class`,
`mask_eval_class`): which categories' masks train, and which are evaluated.

The original framework's names: `all`; `voc`, the 20 PASCAL VOC classes as COCO category ids;
`nonvoc`, the other 60 COCO categories. A value may also list category ids, comma-separated
(`"1,2"`): a split of a dataset other than COCO, such as the three shapes classes.
"""

# The 20 PASCAL VOC classes as COCO category ids.
VOC_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 9, 16, 17, 18, 19, 20, 21, 44, 62, 63, 64, 67, 72)
# The 80 COCO category ids in use (1..90 has 10 unused ids).
_UNUSED_COCO_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_CATEGORY_IDS = tuple(c for c in range(1, 91) if c not in _UNUSED_COCO_IDS)
NON_VOC_CATEGORY_IDS = tuple(c for c in COCO_CATEGORY_IDS if c not in VOC_CATEGORY_IDS)

_NAMED_SPLITS = {"all": None, "voc": VOC_CATEGORY_IDS, "nonvoc": NON_VOC_CATEGORY_IDS}


def split_category_ids(value, key):
    """The category ids a split names, or None for every category.

    Args:
      value: 'all', 'voc', 'nonvoc', or comma-separated category ids ('1,3').
      key: the params key holding `value`, for the error message.

    Returns:
      None for 'all', else a sorted tuple of ints.

    Raises:
      ValueError: an unknown name, or ids that are not positive integers; the message names
        `key` and the value.
    """
    text = str(value).strip()
    if text in _NAMED_SPLITS:
        return _NAMED_SPLITS[text]
    try:
        ids = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        ids = ()
    if not ids or ids[0] < 1:
        raise ValueError(
            f"{key}={value!r} is not one of {', '.join(_NAMED_SPLITS)} or a comma-separated "
            "list of category ids >= 1 (e.g. '1,2')"
        )
    return ids
