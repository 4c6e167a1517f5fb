"""The pure parts of serving: flag parsing and input specs, the TF mask paste against a NumPy
brute force and `paste_instance_mask`, and the classification / segmentation / mask outputs on
hand-made predictions (no model)."""

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import masks as mask_ops
from detection.serving import factory, input_types, outputs
from detection.serving.outputs import OutputOptions
from detection.tools import evaluate_model


@pytest.mark.parametrize(
    "text, expected",
    [("640,640", (640, 640)), (" 96, 128", (96, 128)), ("None,None", (None, None))],
)
def test_parse_image_size(text, expected):
    assert input_types.parse_image_size(text) == expected


@pytest.mark.parametrize("text", ["640", "640x640", "0,10", "None,640", "-1,5", "a,b", "1,2,3"])
def test_parse_image_size_rejects(text):
    with pytest.raises(ValueError, match="--input_image_size"):
        input_types.parse_image_size(text)


def test_parse_batch_size():
    assert input_types.parse_batch_size("None") is None
    assert input_types.parse_batch_size("4") == 4
    for bad in ("0", "-2", "two", ""):
        with pytest.raises(ValueError, match="--batch_size"):
            input_types.parse_batch_size(bad)


def test_input_specs_and_their_signature_tensors():
    spec = input_types.resolve_input_spec("image_tensor", None, (None, None), (96, 96), "images")
    assert spec.tensor_spec() == tf.TensorSpec([None, None, None, 3], tf.uint8, "images")
    raw = input_types.resolve_input_spec("raw_image_tensor", 2, None, (96, 64))
    assert raw.tensor_spec() == tf.TensorSpec([2, 96, 64, 3], tf.float32, "input")
    encoded = input_types.resolve_input_spec("tf_example", 1, (96, 64), (96, 64))
    assert encoded.tensor_spec() == tf.TensorSpec([1], tf.string, "input")
    with pytest.raises(ValueError, match="--input_type='png'"):
        input_types.resolve_input_spec("png", 1, None, (96, 96))
    with pytest.raises(ValueError, match="must fit in the network input 96,96"):
        input_types.resolve_input_spec("raw_image_tensor", 1, (97, 10), (96, 96))
    with pytest.raises(ValueError, match="with --input_type=image_bytes"):
        input_types.resolve_input_spec("image_bytes", 1, (64, 64), (96, 96))


def test_raw_images_are_padded_with_identity_image_info():
    spec = input_types.resolve_input_spec("raw_image_tensor", None, (None, None), (8, 8))
    raw = tf.ones([2, 5, 6, 3])
    images, image_info = input_types.network_inputs(raw, spec, None, (8, 8))
    expected = np.zeros([2, 8, 8, 3], np.float32)
    expected[:, :5, :6] = 1.0
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(image_info, np.tile([[5, 6], [5, 6], [1, 1], [0, 0]], (2, 1, 1)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="must fit in the network input"):
        input_types.network_inputs(tf.ones([1, 9, 8, 3]), spec, None, (8, 8))


def _soft_paste_brute_force(mask, box, height, width):
    """Bilinear sample of the zero-extended mask at every pixel centre, by loops."""
    y0, x0, y1, x1 = box
    mask_h, mask_w = mask.shape
    out = np.zeros((height, width))
    if not (y1 > y0 and x1 > x0):
        return out
    for p in range(height):
        cy = (p + 0.5 - y0) / ((y1 - y0) / mask_h) - 0.5
        for q in range(width):
            cx = (q + 0.5 - x0) / ((x1 - x0) / mask_w) - 0.5
            for i in range(mask_h):
                for j in range(mask_w):
                    weight = max(0.0, 1 - abs(cy - i)) * max(0.0, 1 - abs(cx - j))
                    out[p, q] += weight * mask[i, j]
    return out


def test_paste_instance_masks_matches_brute_force_and_numpy_paste():
    rng = np.random.default_rng(0)
    num = 6
    masks = rng.random((num, 5, 4)).astype(np.float32)
    starts = rng.uniform(-6, 14, (num, 2))
    boxes = np.concatenate([starts, starts + rng.uniform(1, 16, (num, 2))], axis=1)
    boxes[2] = [3, 3, 3, 9]  # empty: pastes nothing
    pasted = mask_ops.paste_instance_masks(masks, boxes, 17, 21).numpy()
    assert pasted.shape == (num, 17, 21)
    for k in range(num):
        soft = _soft_paste_brute_force(masks[k], boxes[k], 17, 21)
        np.testing.assert_allclose(pasted[k], soft, atol=1e-5)
        binary = mask_ops.paste_instance_mask(masks[k], boxes[k], 17, 21)
        decided = np.abs(soft - 0.5) > 1e-4  # away from the threshold
        np.testing.assert_array_equal((pasted[k] >= 0.5)[decided], binary[decided] == 1)
    assert not pasted[2].any()


def test_full_image_masks_are_pasted_per_image_and_padded():
    rng = np.random.default_rng(1)
    masks = rng.random((2, 3, 6, 6)).astype(np.float32)
    boxes = np.array([[[2, 2, 10, 12], [0, 0, 5, 5], [6, 1, 9, 4]]] * 2, np.float32)
    # Image 0: 20 x 24 original, scale 0.5; image 1: 12 x 16 original, scale 1.
    image_info = np.array(
        [[[20, 24], [10, 12], [0.5, 0.5], [0, 0]], [[12, 16], [12, 16], [1, 1], [0, 0]]],
        np.float32,
    )
    predictions = {
        "num_detections": tf.constant([3, 3]),
        "detection_boxes": tf.constant(boxes),
        "detection_classes": tf.ones([2, 3], tf.int32),
        "detection_scores": tf.ones([2, 3]),
        "detection_masks": tf.constant(masks),
    }
    result = outputs.detection_outputs(
        predictions, tf.constant(image_info), (16, 16), OutputOptions(output_full_image_masks=True)
    )
    full = result["detection_masks"].numpy()
    assert full.shape == (2, 3, 20, 24) and full.dtype == np.uint8
    for i, scale in enumerate([0.5, 1.0]):
        height, width = image_info[i, 0].astype(int)
        for k in range(3):
            expected = mask_ops.paste_instance_mask(masks[i, k], boxes[i, k] / scale, height, width)
            mismatched = np.sum(full[i, k, :height, :width] != expected)
            assert mismatched <= 2, (i, k, mismatched)  # float32 vs float64 at the threshold
    assert not full[1, :, 12:].any() and not full[1, :, :, 16:].any()
    np.testing.assert_allclose(result["detection_boxes"][0], boxes[0] * 2, rtol=1e-6)


def test_classification_outputs_softmax_and_top_classes():
    logits = np.array([[0.0, 2.0, 1.0], [3.0, -1.0, 0.5]], np.float32)
    result = outputs.classification_outputs({"logits": tf.constant(logits)}, None, None, None)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-6)
    np.testing.assert_array_equal(result["top_classes"], [[1, 2, 0], [0, 2, 1]])
    np.testing.assert_allclose(result["top_probabilities"], np.sort(expected)[:, ::-1], rtol=1e-6)


def test_segmentation_label_map_from_class_ids_and_logits():
    # Network input 8 x 8; image 0 (4 x 6 original) filled 4 x 6 of it at scale 1; image 1
    # (16 x 8 original) filled 8 x 4 at scale 0.5.
    image_info = tf.constant(
        [[[4, 6], [4, 6], [1, 1], [0, 0]], [[16, 8], [8, 4], [0.5, 0.5], [0, 0]]], tf.float32
    )
    classes = np.arange(64, dtype=np.int32).reshape(1, 8, 8).repeat(2, axis=0) % 5
    result = outputs.segmentation_outputs(
        {"classes": tf.constant(classes)}, image_info, (8, 8), OutputOptions()
    )
    label_map = result["label_map"].numpy()
    assert label_map.shape == (2, 16, 8)
    np.testing.assert_array_equal(label_map[0, :4, :6], classes[0, :4, :6])
    assert np.all(label_map[0, 4:] == -1) and np.all(label_map[0, :, 6:] == -1)
    # Nearest neighbour 2x: each network pixel becomes a 2 x 2 block.
    np.testing.assert_array_equal(label_map[1], np.kron(classes[1, :8, :4], np.ones((2, 2))))

    # Logits at stride 2 (4 x 4) whose argmax is the same everywhere in a quadrant.
    logits = np.zeros([2, 4, 4, 3], np.float32)
    logits[:, :2, :, 1] = 5.0  # top half: class 1
    logits[:, 2:, :, 2] = 5.0  # bottom half: class 2
    result = outputs.segmentation_outputs(
        {"logits": tf.constant(logits)}, image_info, (8, 8), OutputOptions()
    )
    label_map = result["label_map"].numpy()
    np.testing.assert_array_equal(label_map[0, :4, :6], np.ones((4, 6)))  # valid rows 0-3
    np.testing.assert_array_equal(label_map[1, :8], np.ones((8, 8)))  # network rows 0-3
    np.testing.assert_array_equal(label_map[1, 8:], 2 * np.ones((8, 8)))


def test_serving_kinds_check_predictions():
    assert factory.kind_of("retinanet") is factory.DETECTION
    assert factory.kind_of("classification") is factory.CLASSIFICATION
    factory.SEGMENTATION.check_predictions("segmentation", {"classes": 1})
    with pytest.raises(ValueError, match="returns no logits or classes"):
        factory.SEGMENTATION.check_predictions("segmentation", {"probs": 1})
    with pytest.raises(ValueError, match="returns no detection_scores"):
        factory.DETECTION.check_predictions(
            "mask_rcnn", {"num_detections": 1, "detection_boxes": 1, "detection_classes": 1}
        )
    with pytest.raises(Exception, match="model='unet' is not implemented"):
        factory.kind_of("unet")


def test_confusion_matrix_of_label_maps_counts_pixels_by_loops():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 4, (9, 7))
    truth[0, :3] = 255  # ignored
    truth[1, 0] = -1  # padding
    predicted = rng.integers(0, 4, (9, 7))
    matrix = evaluate_model.confusion_matrix(truth, predicted, num_classes=4, ignore_label=255)
    expected = np.zeros((4, 4), np.int64)
    for t, p in zip(truth.ravel(), predicted.ravel()):
        if 0 <= t < 4:
            expected[t, p] += 1
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.sum() == 9 * 7 - 4
