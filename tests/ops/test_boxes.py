"""Tests of detection.ops.boxes against NumPy brute force."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import boxes as box_ops


def _random_boxes(rng, shape, size=64.0):
    corners = rng.uniform(0, size, size=shape + (2, 2))
    lo = corners.min(axis=-2)
    hi = corners.max(axis=-2)
    return np.concatenate([lo, hi], axis=-1).astype(np.float32)


def _np_iou_pair(a, b):
    """IoU of two boxes by the textbook definition (float64)."""
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    union = area_a + area_b - inter
    return inter / union if inter > 0 else 0.0


def test_box_iou_matches_brute_force_batched_with_padding():
    rng = np.random.default_rng(0)
    boxes1 = _random_boxes(rng, (2, 7))
    boxes2 = _random_boxes(rng, (2, 5))
    boxes1[0, 3] = -1.0  # padding row
    boxes2[1, 2] = -1.0
    boxes2[1, 4] = boxes1[1, 0]  # identical box, IoU 1
    boxes1[1, 5] = [10, 10, 10, 20]  # zero height
    want = np.array(
        [[[_np_iou_pair(a, b) for b in boxes2[i]] for a in boxes1[i]] for i in range(2)]
    )
    got = box_ops.box_iou(boxes1, boxes2).numpy()
    assert got.shape == (2, 7, 5)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got[0, 3].max() == 0.0 and got[1, :, 2].max() == 0.0
    assert got[1, 5].max() == 0.0
    assert got[1, 0, 4] == pytest.approx(1.0)
    jit = tf.function(box_ops.box_iou, jit_compile=True)(boxes1, boxes2).numpy()
    np.testing.assert_allclose(jit, want, atol=1e-6)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 1.0])
def test_iou_exceeds_matches_brute_force_and_has_no_division(threshold):
    rng = np.random.default_rng(2)
    boxes1 = _random_boxes(rng, (2, 9))
    boxes2 = _random_boxes(rng, (2, 11))
    boxes2[0, :3] = boxes1[0, :3]  # identical boxes: IoU 1, never > 1
    boxes2[0, 3] = boxes1[0, 3] + [0, 0, 0, 1e-3]  # IoU just below 1
    boxes1[1, 0] = -1.0  # padding row: union 0 against another padding row
    boxes2[1, 0] = -1.0
    boxes1[1, 1] = [10, 10, 10, 20]  # zero height
    ious = np.array(
        [[[_np_iou_pair(a, b) for b in boxes2[i]] for a in boxes1[i]] for i in range(2)]
    )
    # Pairs closer to the threshold than float32 can tell apart are not compared.
    decided = np.abs(ious - threshold) > 1e-5
    got = box_ops.iou_exceeds(boxes1, boxes2, threshold).numpy()
    assert got.shape == (2, 9, 11) and got.dtype == bool
    np.testing.assert_array_equal(got[decided], (ious > threshold)[decided])
    assert not got[1, 0, 0] and not got[1, 1].any()
    graph = (
        tf.function(box_ops.iou_exceeds)
        .get_concrete_function(tf.TensorSpec([9, 4]), tf.TensorSpec([11, 4]), threshold)
        .graph
    )
    assert not [op.type for op in graph.get_operations() if "Div" in op.type]


def test_box_iou_broadcasts_leading_dims():
    rng = np.random.default_rng(1)
    boxes1 = _random_boxes(rng, (3,))
    boxes2 = _random_boxes(rng, (2, 6))
    got = box_ops.box_iou(boxes1[np.newaxis], boxes2)
    assert got.shape == (2, 3, 6)
    for b in range(2):
        np.testing.assert_allclose(got[b], box_ops.box_iou(boxes1, boxes2[b]), atol=0)


def _np_encode(boxes, anchors, weights):
    boxes = boxes.astype(np.float64)
    anchors = anchors.astype(np.float64)
    h, w = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    ha, wa = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    yc, xc = boxes[..., 0] + h / 2, boxes[..., 1] + w / 2
    yac, xac = anchors[..., 0] + ha / 2, anchors[..., 1] + wa / 2
    out = np.stack([(yc - yac) / ha, (xc - xac) / wa, np.log(h / ha), np.log(w / wa)], axis=-1)
    return out * np.asarray(weights)


def _np_decode(deltas, anchors, weights):
    deltas = deltas.astype(np.float64) / np.asarray(weights)
    anchors = anchors.astype(np.float64)
    ha, wa = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    yac, xac = anchors[..., 0] + ha / 2, anchors[..., 1] + wa / 2
    yc = deltas[..., 0] * ha + yac
    xc = deltas[..., 1] * wa + xac
    h = np.exp(np.minimum(deltas[..., 2], math.log(1000 / 16))) * ha
    w = np.exp(np.minimum(deltas[..., 3], math.log(1000 / 16))) * wa
    return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)


@pytest.mark.parametrize("weights", [None, (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_match_numpy_and_round_trip(weights):
    rng = np.random.default_rng(2)
    boxes = _random_boxes(rng, (2, 50)) + np.float32([0, 0, 1, 1])
    anchors = _random_boxes(rng, (2, 50)) + np.float32([0, 0, 1, 1])
    np_weights = (1, 1, 1, 1) if weights is None else weights
    encoded = box_ops.encode_boxes(boxes, anchors, weights)
    np.testing.assert_allclose(
        encoded, _np_encode(boxes, anchors, np_weights), rtol=1e-4, atol=1e-4
    )
    decoded = box_ops.decode_boxes(encoded, anchors, weights)
    np.testing.assert_allclose(decoded, boxes, atol=2e-3)

    deltas = rng.normal(size=(2, 50, 4)).astype(np.float32)
    want = _np_decode(deltas, anchors, np_weights)
    np.testing.assert_allclose(
        box_ops.decode_boxes(deltas, anchors, weights), want, rtol=1e-4, atol=1e-3
    )
    np.testing.assert_allclose(
        box_ops.encode_boxes(box_ops.decode_boxes(deltas, anchors, weights), anchors, weights),
        deltas,
        rtol=1e-3,
        atol=1e-3,
    )

    @tf.function(jit_compile=True)
    def coder(b, a, d):
        return (box_ops.encode_boxes(b, a, weights), box_ops.decode_boxes(d, a, weights))

    jit_encoded, jit_decoded = coder(boxes, anchors, deltas)
    np.testing.assert_allclose(jit_encoded, encoded, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jit_decoded, want, rtol=1e-4, atol=1e-3)


def test_encode_identity_is_zero_and_broadcasts_anchors():
    anchors = np.float32([[0, 0, 8, 16], [4, 4, 36, 20]])
    encoded = box_ops.encode_boxes(anchors[np.newaxis], anchors)
    np.testing.assert_array_equal(encoded, np.zeros((1, 2, 4)))


def test_decode_clips_log_scale():
    anchors = np.float32([[10, 10, 20, 30]])
    deltas = np.float32([[0, 0, 100.0, 100.0]])
    decoded = box_ops.decode_boxes(deltas, anchors).numpy()[0]
    assert decoded[2] - decoded[0] == pytest.approx(10 * 1000 / 16, rel=1e-5)
    assert decoded[3] - decoded[1] == pytest.approx(20 * 1000 / 16, rel=1e-5)
    assert np.all(np.isfinite(decoded))


def test_clip_boxes_per_image_and_tuple():
    rng = np.random.default_rng(3)
    boxes = _random_boxes(rng, (2, 10), size=100.0) - 20.0
    image_shape = np.float32([[50, 60], [70, 40]])
    got = box_ops.clip_boxes(boxes, image_shape[:, np.newaxis, :]).numpy()
    for b, (h, w) in enumerate(image_shape):
        want = np.clip(boxes[b], 0, [h, w, h, w])
        np.testing.assert_array_equal(got[b], want)
    np.testing.assert_array_equal(
        box_ops.clip_boxes(boxes, (50, 60)), np.clip(boxes, 0, [50, 60, 50, 60])
    )
    jit = tf.function(box_ops.clip_boxes, jit_compile=True)(boxes, image_shape[:, np.newaxis, :])
    np.testing.assert_array_equal(jit, got)


def test_normalize_denormalize():
    boxes = np.float32([[[10, 20, 30, 40]], [[5, 5, 10, 20]]])
    image_shape = np.float32([[100, 200], [10, 20]])[:, np.newaxis, :]
    normalized = box_ops.normalize_boxes(boxes, image_shape).numpy()
    np.testing.assert_allclose(
        normalized, [[[0.1, 0.1, 0.3, 0.2]], [[0.5, 0.25, 1.0, 1.0]]], rtol=1e-6
    )
    np.testing.assert_allclose(box_ops.denormalize_boxes(normalized, image_shape), boxes, rtol=1e-6)
    np.testing.assert_allclose(
        box_ops.normalize_boxes(boxes, [100, 200])[0], [[0.1, 0.1, 0.3, 0.2]], rtol=1e-6
    )


def test_areas_and_format_conversions():
    boxes = np.float32([[10, 20, 30, 60], [5, 5, 4, 9], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(box_ops.box_areas(boxes), [800, 0, 0])
    xywh = box_ops.yxyx_to_xywh(boxes[:1])
    assert isinstance(xywh, np.ndarray)
    np.testing.assert_array_equal(xywh, [[20, 10, 40, 20]])
    np.testing.assert_array_equal(box_ops.xywh_to_yxyx(xywh), boxes[:1])
    np.testing.assert_array_equal(box_ops.yxyx_to_xywh(tf.constant(boxes[:1])), [[20, 10, 40, 20]])


def test_mapping_between_original_and_network_input_pixels_by_hand():
    image_info = np.float64([[[100, 80], [50, 160], [0.5, 2.0], [3.0, 5.0]]])
    original = np.float64([[[26.0, 12.5, 66.0, 22.5]]])
    # y: 26 * 0.5 - 3 = 10, 66 * 0.5 - 3 = 30; x: 12.5 * 2 - 5 = 20, 22.5 * 2 - 5 = 40.
    network = box_ops.boxes_to_network_input(original, image_info)
    assert isinstance(network, np.ndarray) and network.dtype == np.float64
    np.testing.assert_array_equal(network, [[[10.0, 20.0, 30.0, 40.0]]])
    np.testing.assert_array_equal(box_ops.boxes_to_original_pixels(network, image_info), original)
    # One image (no batch dimension), as tensors: the same numbers.
    back = box_ops.boxes_to_original_pixels(
        tf.constant(network[0], tf.float32), tf.constant(image_info[0], tf.float32)
    )
    np.testing.assert_allclose(back.numpy(), original[0], rtol=1e-6)
    np.testing.assert_array_equal(box_ops.yxyx_to_xywh(original[0, 0]), [12.5, 26.0, 10.0, 40.0])


@pytest.mark.parametrize(
    "fn",
    [
        lambda b: box_ops.box_iou(b, b),
        lambda b: box_ops.box_areas(b),
        lambda b: box_ops.encode_boxes(b, b),
        lambda b: box_ops.decode_boxes(b, b),
        lambda b: box_ops.clip_boxes(b, (4, 4)),
        box_ops.yxyx_to_xywh,
    ],
)
def test_last_dimension_must_be_4(fn):
    with pytest.raises(ValueError, match="last dimension 4"):
        fn(np.zeros((3, 5), np.float32))


def _np_jitter(box, noise):
    """ShapeMask's jitter by hand: centre + noise * size, size * exp(noise)."""
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    n_x, n_y, n_w, n_h = (float(v) for v in noise)
    height, width = ymax - ymin, xmax - xmin
    y_c = (ymin + ymax) / 2 + n_y * height
    x_c = (xmin + xmax) / 2 + n_x * width
    height, width = height * math.exp(n_h), width * math.exp(n_w)
    return [y_c - height / 2, x_c - width / 2, y_c + height / 2, x_c + width / 2]


def test_jitter_boxes_with_noise_matches_numpy():
    rng = np.random.default_rng(5)
    boxes = _random_boxes(rng, (3, 4))
    noise = rng.normal(0, 0.1, size=(3, 4, 4)).astype(np.float32)
    got = box_ops.jitter_boxes_with_noise(boxes, noise).numpy()
    want = [[_np_jitter(b, n) for b, n in zip(row_b, row_n)] for row_b, row_n in zip(boxes, noise)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        box_ops.jitter_boxes_with_noise(boxes, np.zeros(4)), boxes, rtol=1e-6, atol=1e-5
    )


def test_jitter_boxes_noise_statistics():
    """Recover the drawn noise from the jittered boxes: normal with the requested stddev."""
    boxes = np.tile(np.float32([[10, 20, 50, 100]]), (20000, 1))
    jittered = box_ops.jitter_boxes(tf.constant(boxes), 0.025, seed=1).numpy().astype(np.float64)
    height, width = 40.0, 80.0
    noise = np.stack(
        [
            ((jittered[:, 1] + jittered[:, 3]) / 2 - 60.0) / width,
            ((jittered[:, 0] + jittered[:, 2]) / 2 - 30.0) / height,
            np.log((jittered[:, 3] - jittered[:, 1]) / width),
            np.log((jittered[:, 2] - jittered[:, 0]) / height),
        ],
        axis=1,
    )
    np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(noise.std(axis=0), 0.025, rtol=0.03)
    assert np.all(box_ops.jitter_boxes(tf.constant(boxes), 0.0).numpy() == boxes)
    with pytest.raises(ValueError, match="noise_scale"):
        box_ops.jitter_boxes(boxes, -0.1)


def test_outer_boxes_match_numpy_and_clip():
    rng = np.random.default_rng(6)
    boxes = _random_boxes(rng, (2, 5))
    got = box_ops.outer_boxes(boxes, 1.25, (64, 48)).numpy()
    for box, out in zip(boxes.reshape(-1, 4), got.reshape(-1, 4)):
        y_c, x_c = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half_h, half_w = 1.25 * (box[2] - box[0]) / 2, 1.25 * (box[3] - box[1]) / 2
        want = np.clip(
            [y_c - half_h, x_c - half_w, y_c + half_h, x_c + half_w], 0, [64, 48, 64, 48]
        )
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        box_ops.outer_boxes(boxes, 1.0, (64, 64)), np.minimum(boxes, 64), atol=1e-5
    )
    xla = tf.function(lambda b: box_ops.outer_boxes(b, 1.25, (64, 48)), jit_compile=True)
    np.testing.assert_allclose(xla(boxes), got, atol=1e-5)
    with pytest.raises(ValueError, match="outer_box_scale"):
        box_ops.outer_boxes(boxes, 0.9, (64, 64))
