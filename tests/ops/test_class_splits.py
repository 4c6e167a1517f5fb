"""ShapeMask's class splits: the original's VOC / non-VOC COCO ids, and explicit id lists."""

import pytest

from detection.ops import class_splits


def test_named_splits_partition_the_80_coco_categories():
    voc = class_splits.split_category_ids("voc", "k")
    nonvoc = class_splits.split_category_ids("nonvoc", "k")
    assert len(voc) == 20 and len(nonvoc) == 60
    assert not set(voc) & set(nonvoc)
    assert sorted(voc + nonvoc) == list(class_splits.COCO_CATEGORY_IDS)
    assert 1 in voc and 18 in voc and 10 in nonvoc and 12 not in nonvoc  # person, dog, light
    assert class_splits.split_category_ids("all", "k") is None


def test_id_lists():
    assert class_splits.split_category_ids("1,2", "k") == (1, 2)
    assert class_splits.split_category_ids(" 3, 1,3 ", "k") == (1, 3)
    assert class_splits.split_category_ids(3, "k") == (3,)


@pytest.mark.parametrize("value", ["dogs", "", "0,1", "1,,2", "-1", "1.5"])
def test_bad_values_name_the_key(value):
    with pytest.raises(ValueError, match="shapemask_parser.mask_train_class="):
        class_splits.split_category_ids(value, "shapemask_parser.mask_train_class")
