"""Multilevel ROI align against a per-sample NumPy bilinear reference."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import roi_align

_IMAGE = 512  # large enough for boxes of every level 2..5 (side >= 448 reaches level 5)
_LEVELS = (2, 3, 4, 5)
_CHANNELS = 3


def _features(rng, batch=2):
    return {
        str(level): rng.normal(
            size=(batch, _IMAGE // 2**level, _IMAGE // 2**level, _CHANNELS)
        ).astype(np.float32)
        for level in _LEVELS
    }


def _boxes(rng, batch=2):
    """Boxes of every level, some touching the image border, one empty."""
    sides = [20, 60, 111, 113, 150, 230, 300, 440, 460, 512]
    boxes = []
    for _ in range(batch):
        rows = []
        for side in sides:
            h = side * rng.uniform(0.7, 1.3)
            w = side * side / h
            y0 = rng.uniform(-0.2 * h, _IMAGE - 0.8 * h)
            x0 = rng.uniform(-0.2 * w, _IMAGE - 0.8 * w)
            rows.append(np.clip([y0, x0, y0 + h, x0 + w], 0, _IMAGE))
        rows.append([0, 0, _IMAGE, _IMAGE])
        rows.append([37.0, 41.0, 37.0, 41.0])  # empty: level 2, one point sampled
        boxes.append(rows)
    return np.array(boxes, np.float32)


def _np_level(box, min_level, max_level):
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    if area <= 0:
        return min_level
    level = math.floor(4 + math.log2(math.sqrt(area) / 224.0))
    return min(max(level, min_level), max_level)


def _np_bilinear(feature, y, x):
    """feature [h, w, c] at (y, x) in pixel-index coordinates, clamped to the border pixels."""
    h, w, _ = feature.shape
    y = min(max(y, 0.0), h - 1.0)
    x = min(max(x, 0.0), w - 1.0)
    y0, x0 = math.floor(y), math.floor(x)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * feature[y0, x0]
        + (1 - ly) * lx * feature[y0, x1]
        + ly * (1 - lx) * feature[y1, x0]
        + ly * lx * feature[y1, x1]
    )


def _np_roi_align(features, boxes, output_size, sampling_ratio):
    """One bilinear sample per (bin, sub-sample), averaged, as loops."""
    levels = sorted(int(k) for k in features)
    batch, num_boxes, _ = boxes.shape
    out = np.zeros((batch, num_boxes, output_size, output_size, _CHANNELS))
    for b in range(batch):
        for n in range(num_boxes):
            level = _np_level(boxes[b, n], levels[0], levels[-1])
            feature = features[str(level)][b].astype(np.float64)
            y0, x0, y1, x1 = boxes[b, n].astype(np.float64) / 2.0**level
            bin_h, bin_w = (y1 - y0) / output_size, (x1 - x0) / output_size
            for i in range(output_size):
                for j in range(output_size):
                    total = 0.0
                    for a in range(sampling_ratio):
                        for c in range(sampling_ratio):
                            y = y0 + (i + (a + 0.5) / sampling_ratio) * bin_h
                            x = x0 + (j + (c + 0.5) / sampling_ratio) * bin_w
                            total = total + _np_bilinear(feature, y, x)
                    out[b, n, i, j] = total / sampling_ratio**2
    return out


def test_assign_levels_matches_formula():
    rng = np.random.default_rng(0)
    sides = rng.uniform(1, 2000, size=(2, 50))
    aspect = rng.uniform(0.3, 3.0, size=(2, 50))
    h, w = sides * np.sqrt(aspect), sides / np.sqrt(aspect)
    boxes = np.stack([np.zeros_like(h), np.zeros_like(w), h, w], -1).astype(np.float32)
    boxes[0, :4] = [[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 448, 448], [5, 5, 5, 9]]
    got = roi_align.assign_levels(boxes, 2, 6).numpy()
    want = [[_np_level(box, 2, 6) for box in row] for row in boxes]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[0, :4], [4, 3, 5, 2])
    assert got.dtype == np.int32
    assert set(np.unique(got)) == {2, 3, 4, 5, 6}


@pytest.mark.parametrize("sampling_ratio", [1, 2])
def test_roi_align_matches_numpy_reference(sampling_ratio):
    rng = np.random.default_rng(1)
    features, boxes = _features(rng), _boxes(rng)
    levels = roi_align.assign_levels(boxes, 2, 5).numpy()
    assert set(np.unique(levels)) == set(_LEVELS)  # every level is exercised
    got = roi_align.multilevel_roi_align(features, boxes, 5, sampling_ratio=sampling_ratio)
    assert got.shape == (2, boxes.shape[1], 5, 5, _CHANNELS)
    want = _np_roi_align(features, boxes, 5, sampling_ratio)
    # float32 sample coordinates (up to 128 feature pixels) carry ~1e-5 of rounding.
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=5e-5)


def test_roi_align_compiles_with_xla_and_equals_eager():
    rng = np.random.default_rng(2)
    features, boxes = _features(rng), _boxes(rng)
    eager = roi_align.multilevel_roi_align(features, boxes, 7)
    compiled = tf.function(lambda f, b: roi_align.multilevel_roi_align(f, b, 7), jit_compile=True)(
        features, boxes
    )
    np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-4, atol=5e-5)


def test_roi_align_gradient_compiles_and_matches_reference_adjoint():
    """d(sum(crops * probe)) / d(features) equals the reference's linear map transposed."""
    rng = np.random.default_rng(3)
    features = {k: v[:1] for k, v in _features(rng).items()}
    boxes = _boxes(rng)[:1, [0, 4, 10]]
    probe = rng.normal(size=(1, 3, 2, 2, _CHANNELS)).astype(np.float32)

    @tf.function(jit_compile=True)
    def gradient(feats):
        with tf.GradientTape() as tape:
            tape.watch(feats)
            loss = tf.reduce_sum(roi_align.multilevel_roi_align(feats, boxes, 2) * probe)
        return tape.gradient(loss, feats)

    got = gradient({k: tf.constant(v) for k, v in features.items()})
    # Finite differences of a linear map are exact: perturb a few feature entries.
    levels = np.unique(roi_align.assign_levels(boxes, 2, 5).numpy())
    assert len(levels) == 3
    for level in map(str, levels):
        nonzero = np.argwhere(np.abs(got[level].numpy()) > 0)
        assert len(nonzero) > 0
        for index in nonzero[:3]:
            bumped = {k: v.astype(np.float64) for k, v in features.items()}
            bumped[level][tuple(index)] += 1.0
            delta = (
                _np_roi_align(bumped, boxes, 2, 1) - _np_roi_align(features, boxes, 2, 1)
            ) * probe
            np.testing.assert_allclose(got[level].numpy()[tuple(index)], delta.sum(), atol=1e-4)


def test_bad_arguments_raise():
    rng = np.random.default_rng(4)
    features, boxes = _features(rng), _boxes(rng)
    with pytest.raises(ValueError, match="every level"):
        roi_align.multilevel_roi_align(features, boxes, 7, min_level=2, max_level=6)
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align.multilevel_roi_align(features, boxes, 7, sampling_ratio=0)
    with pytest.raises(ValueError, match="last dimension 4"):
        roi_align.multilevel_roi_align(features, boxes[..., :3], 7)
