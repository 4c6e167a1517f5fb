"""Tests of detection.ops.anchors against a brute-force NumPy layout."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import anchors as anchors_lib


def _brute_force(min_level, max_level, num_scales, aspect_ratios, anchor_size, height, width):
    """Anchors one by one: level, row, column, scale, aspect ratio."""
    out = []
    for level in range(min_level, max_level + 1):
        stride = 2**level
        for row in range(math.ceil(height / stride)):
            for col in range(math.ceil(width / stride)):
                cy, cx = stride / 2 + row * stride, stride / 2 + col * stride
                for scale in range(num_scales):
                    base = anchor_size * stride * 2 ** (scale / num_scales)
                    for ratio in aspect_ratios:
                        h, w = base / math.sqrt(ratio), base * math.sqrt(ratio)
                        out.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(out, np.float32)


@pytest.mark.parametrize("image_size", [64, (64, 96), (100, 72)])
def test_boxes_match_brute_force(image_size):
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    anchors = anchors_lib.Anchors(3, 5, 3, [1.0, 2.0, 0.5], 4.0, image_size)
    want = _brute_force(3, 5, 3, [1.0, 2.0, 0.5], 4.0, height, width)
    assert anchors.boxes.dtype == tf.float32
    np.testing.assert_allclose(anchors.boxes, want, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(anchors.numpy_boxes, anchors.boxes)
    assert anchors.num_anchors == len(want)
    assert anchors.anchors_per_location == 9
    assert anchors.levels == ["3", "4", "5"]
    assert anchors.feature_sizes == {
        str(l): (math.ceil(height / 2**l), math.ceil(width / 2**l)) for l in (3, 4, 5)
    }


def test_centers_match_original_range_when_divisible():
    """The original placed centers at range(stride / 2, size, stride)."""
    anchors = anchors_lib.Anchors(2, 4, 1, [1.0], 1.0, (64, 128))
    for level, boxes in anchors.multilevel_boxes.items():
        stride = 2 ** int(level)
        boxes = boxes.numpy()
        np.testing.assert_allclose(
            (boxes[:, 0, 0] + boxes[:, 0, 2]) / 2, np.arange(stride / 2, 64, stride)
        )
        np.testing.assert_allclose(
            (boxes[0, :, 1] + boxes[0, :, 3]) / 2, np.arange(stride / 2, 128, stride)
        )
        np.testing.assert_allclose(boxes[0, 0, 2] - boxes[0, 0, 0], stride)


def test_aspect_ratio_is_width_over_height():
    anchors = anchors_lib.Anchors(3, 3, 1, [2.0], 4.0, 32)
    box = anchors.numpy_boxes[0]
    height, width = box[2] - box[0], box[3] - box[1]
    assert width / height == pytest.approx(2.0)
    assert height * width == pytest.approx(32.0**2)


def test_multilevel_boxes_and_unpack_labels():
    anchors = anchors_lib.Anchors(3, 5, 2, [1.0, 0.5], 3.0, (64, 96))
    per_loc = anchors.anchors_per_location
    multilevel = anchors.multilevel_boxes
    flat = anchors.numpy_boxes
    start = 0
    for level, (h, w) in anchors.feature_sizes.items():
        assert multilevel[level].shape == (h, w, per_loc * 4)
        count = h * w * per_loc
        np.testing.assert_array_equal(
            multilevel[level].numpy().reshape(-1, 4), flat[start : start + count]
        )
        start += count
    assert start == len(flat)

    labels = np.arange(anchors.num_anchors, dtype=np.int32)
    unpacked = anchors.unpack_labels(labels)
    assert unpacked["4"].shape == (4, 6, per_loc)
    offset = 8 * 12 * per_loc  # level 3
    # Level 4, row 1, column 2, anchor 3.
    assert unpacked["4"][1, 2, 3] == offset + (1 * 6 + 2) * per_loc + 3
    with pytest.raises(ValueError, match="rows"):
        anchors.unpack_labels(labels[:-1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(min_level=5, max_level=3), "min_level"),
        (dict(num_scales=0), "num_scales"),
        (dict(aspect_ratios=[]), "aspect_ratios"),
        (dict(aspect_ratios=[1.0, -2.0]), "aspect_ratios"),
        (dict(anchor_size=0.0), "anchor_size"),
        (dict(image_size=(64, 64, 3)), "image_size"),
        (dict(image_size=0), "image_size"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    args = dict(
        min_level=3,
        max_level=5,
        num_scales=3,
        aspect_ratios=[1.0, 2.0, 0.5],
        anchor_size=4.0,
        image_size=64,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        anchors_lib.Anchors(**args)
