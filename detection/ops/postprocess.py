"""Detection generators: raw head outputs -> final padded detections.

- `MultilevelDetectionGenerator`: RetinaNet (sigmoid scores over multilevel anchors).
- `FastRCNNDetectionGenerator`: Faster/Mask/Cascade R-CNN (softmax scores over ROIs, per-class
  boxes).
Both return `num_detections [b]`, `detection_boxes [b, K, 4]`, `detection_scores [b, K]` and
`detection_classes [b, K]` (1..num_classes-1), descending score, padded with 0.
"""

import tensorflow as tf

from detection.ops import boxes as box_ops
from detection.ops import nms as nms_ops


def _sorted_levels(outputs, name):
    if not outputs:
        raise ValueError(f"{name} is empty; expected {{level: tensor}}.")
    try:
        return sorted(outputs, key=int)
    except (TypeError, ValueError) as e:
        raise ValueError(f'{name} keys must be levels like "3", got {list(outputs)}.') from e


def top_k_detections(boxes, scores, max_total_size, score_threshold):
    """The best `max_total_size` (box, class) pairs scoring above the threshold, without NMS.

    Args:
      boxes: [b, N, 4] shared by the classes, or [b, N, C, 4] per class.
      scores: [b, N, C] scores of the real classes (background dropped).
      max_total_size: int K, the padded output size.
      score_threshold: float, pairs need a score > this.

    Returns:
      The detection dict (classes offset by 1), padded to K.
    """
    batch_size = tf.shape(scores)[0]
    num_classes = scores.shape[-1]
    flat_scores = tf.reshape(scores, [batch_size, -1])
    k = min(int(max_total_size), flat_scores.shape[-1])
    top_scores, top = tf.math.top_k(flat_scores, k=k, sorted=True)
    is_valid = top_scores > score_threshold
    if boxes.shape.rank == 4:
        top_boxes = tf.gather(tf.reshape(boxes, [batch_size, -1, 4]), top, batch_dims=1)
    else:
        top_boxes = tf.gather(boxes, top // num_classes, batch_dims=1)
    pad = int(max_total_size) - k
    result = {
        "detection_boxes": tf.where(is_valid[..., None], top_boxes, 0.0),
        "detection_scores": tf.where(is_valid, top_scores, 0.0),
        "detection_classes": tf.where(is_valid, top % num_classes + 1, 0),
    }
    # Fewer (box, class) pairs than max_total_size: pad to the static size.
    result = {
        key: tf.pad(value, [[0, 0], [0, pad]] + [[0, 0]] * (value.shape.rank - 2))
        for key, value in result.items()
    }
    result["num_detections"] = tf.reduce_sum(tf.cast(is_valid, tf.int32), 1)
    return result


def _check_postprocess_args(max_total_size, nms_iou_threshold, pre_nms_num_boxes):
    if int(max_total_size) < 1:
        raise ValueError(f"postprocess.max_total_size must be >= 1, got {max_total_size}.")
    if int(pre_nms_num_boxes) < 1:
        raise ValueError(f"postprocess.pre_nms_num_boxes must be >= 1, got {pre_nms_num_boxes}.")
    if not 0.0 <= float(nms_iou_threshold) <= 1.0:
        raise ValueError(
            f"postprocess.nms_iou_threshold must be in [0, 1], got {nms_iou_threshold}."
        )


class MultilevelDetectionGenerator:
    """Decodes, scores and suppresses RetinaNet outputs into padded detections.

    Scores of class column 0 (background) are dropped; the returned classes are
    the original class ids (1..num_classes-1). Boxes are decoded with weights
    (1, 1, 1, 1) and clipped to the image.
    """

    def __init__(
        self,
        apply_nms=True,
        max_total_size=100,
        nms_iou_threshold=0.5,
        score_threshold=0.05,
        pre_nms_num_boxes=5000,
        apply_sigmoid=True,
    ):
        """Args mirror the original `postprocess` params.

        Args:
          apply_nms: bool; when False the `max_total_size` best (anchor, class)
            pairs above `score_threshold` are returned without suppression.
          max_total_size: int K, the padded number of detections per image.
          nms_iou_threshold: float, suppress when IoU > this.
          score_threshold: float, detections need a score > this.
          pre_nms_num_boxes: int, candidates per class entering NMS.
          apply_sigmoid: bool; class outputs are logits to pass through a sigmoid
            (False: they are already scores).
        """
        _check_postprocess_args(max_total_size, nms_iou_threshold, pre_nms_num_boxes)
        self._apply_nms = bool(apply_nms)
        self._max_total_size = int(max_total_size)
        self._nms_iou_threshold = float(nms_iou_threshold)
        self._score_threshold = float(score_threshold)
        self._pre_nms_num_boxes = int(pre_nms_num_boxes)
        self._apply_sigmoid = bool(apply_sigmoid)

    def flatten_outputs(self, box_outputs, class_outputs, anchor_boxes, image_shape):
        """Decodes and scores all anchors of all levels.

        Args:
          box_outputs: {level: [batch, h, w, A * 4]}.
          class_outputs: {level: [batch, h, w, A * num_classes]}.
          anchor_boxes: {level: [h, w, A * 4]} or {level: [batch, h, w, A * 4]}.
          image_shape: [batch, 2] or [2] (height, width) of the network input.

        Returns:
          boxes: [batch, N, 4] decoded and clipped boxes, N anchors of all levels.
          scores: [batch, N, num_classes - 1] scores without the background.
        """
        levels = _sorted_levels(box_outputs, "box_outputs")
        if set(levels) != set(class_outputs) or set(levels) != set(anchor_boxes):
            raise ValueError(
                "box_outputs, class_outputs and anchor_boxes must have "
                f"the same levels, got {sorted(box_outputs)}, "
                f"{sorted(class_outputs)} and {sorted(anchor_boxes)}."
            )
        all_boxes, all_scores = [], []
        for level in levels:
            box_out = tf.convert_to_tensor(box_outputs[level])
            cls_out = tf.convert_to_tensor(class_outputs[level])
            num_anchors = box_out.shape[-1] // 4
            if box_out.shape[-1] % 4 or cls_out.shape[-1] % num_anchors:
                raise ValueError(
                    f"level {level}: box_outputs {box_out.shape} and "
                    f"class_outputs {cls_out.shape} do not split into "
                    "the same number of anchors per location."
                )
            num_classes = cls_out.shape[-1] // num_anchors
            batch_size = tf.shape(box_out)[0]
            # The anchor count stays static even when the batch is not (serving with a
            # dynamic batch): NMS needs a static number of boxes.
            num_level_anchors = box_out.shape[1] * box_out.shape[2] * num_anchors
            logits = tf.reshape(cls_out, [batch_size, num_level_anchors, num_classes])
            logits = tf.cast(logits, tf.float32)
            scores = tf.sigmoid(logits) if self._apply_sigmoid else logits
            all_scores.append(scores[:, :, 1:])
            anchors = tf.reshape(
                tf.cast(anchor_boxes[level], tf.float32),
                [-1, box_out.shape[1] * box_out.shape[2] * num_anchors, 4],
            )
            deltas = tf.reshape(tf.cast(box_out, tf.float32), [batch_size, num_level_anchors, 4])
            all_boxes.append(box_ops.decode_boxes(deltas, anchors))
        boxes = tf.concat(all_boxes, axis=1)
        image_shape = tf.cast(image_shape, tf.float32)
        if image_shape.shape.rank == 2:
            image_shape = image_shape[:, tf.newaxis, :]
        boxes = box_ops.clip_boxes(boxes, image_shape)
        return boxes, tf.concat(all_scores, axis=1)

    def __call__(self, box_outputs, class_outputs, anchor_boxes, image_shape):
        """Generates detections; arguments as in `flatten_outputs`.

        Returns:
          A dict of `num_detections [batch] int32`, `detection_boxes [batch, K, 4]`
          (network-input pixels), `detection_scores [batch, K]`,
          `detection_classes [batch, K] int32`, descending score, padded with 0.
        """
        boxes, scores = self.flatten_outputs(box_outputs, class_outputs, anchor_boxes, image_shape)
        if self._apply_nms:
            return nms_ops.multiclass_nms(
                boxes,
                scores,
                self._max_total_size,
                self._nms_iou_threshold,
                self._score_threshold,
                self._pre_nms_num_boxes,
                class_offset=1,
            )
        return top_k_detections(boxes, scores, self._max_total_size, self._score_threshold)


class FastRCNNDetectionGenerator:
    """Turns Fast R-CNN head outputs on ROIs into padded detections (the original's
    `GenericDetectionGenerator`).

    Scores are the softmax of the class logits with the background column dropped; each ROI's
    box of each class is decoded from that class's regression (or the one class-agnostic
    regression) with the stage's box weights and clipped to the image; then per-class NMS
    (ops/nms.multiclass_nms). Empty ROIs (the zero padding of the proposals) never become
    detections.
    """

    def __init__(
        self,
        max_total_size=100,
        nms_iou_threshold=0.5,
        score_threshold=0.05,
        pre_nms_num_boxes=1000,
        apply_nms=True,
    ):
        """Args mirror the original `postprocess` params.

        Args:
          max_total_size: int K, the padded number of detections per image.
          nms_iou_threshold: float, suppress when IoU > this.
          score_threshold: float, detections need a score > this.
          pre_nms_num_boxes: int, candidates per class entering NMS.
          apply_nms: bool; when False the K best (ROI, class) pairs above the threshold are
            returned without suppression.
        """
        _check_postprocess_args(max_total_size, nms_iou_threshold, pre_nms_num_boxes)
        self._max_total_size = int(max_total_size)
        self._nms_iou_threshold = float(nms_iou_threshold)
        self._score_threshold = float(score_threshold)
        self._pre_nms_num_boxes = int(pre_nms_num_boxes)
        self._apply_nms = bool(apply_nms)

    def decode(self, box_outputs, class_outputs, rois, image_shape, box_weights):
        """Scores and per-class boxes of every ROI.

        Args: as in `__call__`.

        Returns:
          boxes: [b, R, C - 1, 4] decoded and clipped (C - 1 = 1 when class-agnostic, shared).
          scores: [b, R, C - 1] softmax scores without the background, 0 for empty ROIs.
        """
        class_outputs = tf.cast(class_outputs, tf.float32)
        box_outputs = tf.cast(box_outputs, tf.float32)
        rois = tf.cast(rois, tf.float32)
        num_classes = class_outputs.shape[-1]
        batch_size = tf.shape(class_outputs)[0]
        num_rois = class_outputs.shape[1]
        if box_outputs.shape[-1] == 4 * num_classes:
            deltas = tf.reshape(box_outputs, [batch_size, num_rois, num_classes, 4])[:, :, 1:]
        elif box_outputs.shape[-1] == 4:
            deltas = box_outputs[:, :, tf.newaxis, :]
        else:
            raise ValueError(
                f"box_outputs {box_outputs.shape} must have 4 * {num_classes} (per class) or 4 "
                f"(class-agnostic) values per ROI for class_outputs {class_outputs.shape}."
            )
        boxes = box_ops.decode_boxes(deltas, rois[:, :, tf.newaxis, :], weights=box_weights)
        image_shape = tf.cast(image_shape, tf.float32)[:, tf.newaxis, tf.newaxis, :]
        boxes = box_ops.clip_boxes(boxes, image_shape)
        scores = tf.nn.softmax(class_outputs, axis=-1)[:, :, 1:]
        non_empty = box_ops.box_areas(rois) > 0.0
        return boxes, tf.where(non_empty[..., tf.newaxis], scores, 0.0)

    def __call__(
        self, box_outputs, class_outputs, rois, image_shape, box_weights=(10.0, 10.0, 5.0, 5.0)
    ):
        """Generates detections.

        Args:
          box_outputs: [b, R, num_classes * 4] per-class or [b, R, 4] class-agnostic encoded
            boxes relative to the ROIs.
          class_outputs: [b, R, num_classes] logits (column 0 is the background).
          rois: [b, R, 4] the ROIs the head ran on (network-input pixels).
          image_shape: [b, 2] valid (height, width) to clip to.
          box_weights: the 4 box-coder weights of the head's stage.

        Returns:
          A dict of `num_detections [b] int32`, `detection_boxes [b, K, 4]`,
          `detection_scores [b, K]`, `detection_classes [b, K] int32` (1..num_classes-1),
          descending score, padded with 0.
        """
        boxes, scores = self.decode(box_outputs, class_outputs, rois, image_shape, box_weights)
        if not self._apply_nms:
            if boxes.shape[2] == 1:
                boxes = boxes[:, :, 0]
            return top_k_detections(boxes, scores, self._max_total_size, self._score_threshold)
        return nms_ops.multiclass_nms(
            boxes,
            scores,
            self._max_total_size,
            self._nms_iou_threshold,
            self._score_threshold,
            self._pre_nms_num_boxes,
            class_offset=1,
        )
