"""The RetinaNet detector part of a model fn: anchors, focal/Huber losses, detection generator.

RetinaNet's model fn is this and nothing else; ShapeMask's adds its mask branch on top (its
detector is RetinaNet, trained with the same losses and decoded by the same generator).
"""

import numpy as np
import tensorflow as tf

from detection.dataloader import factory as dataloader_factory
from detection.modeling.losses.retinanet_losses import RetinaNetLoss
from detection.ops.postprocess import MultilevelDetectionGenerator


def without_padding(labels, valid):
    """Targets with the padded examples of an eval batch turned into ignored anchors.

    The input pipeline pads the last eval batch with -1 everywhere; as targets that would be
    negatives and non-zero box targets, so padding would enter the eval losses. Ignored
    anchors (-2), zero box targets and zero positives leave the losses of the real examples.

    Args:
      labels: RetinaNet labels (`cls_targets`, `box_targets` per level, `num_positives [b]`).
      valid: [b] bool, False for padding.
    """

    def where_valid(values, fill):
        mask = tf.reshape(valid, [-1] + [1] * (values.shape.rank - 1))
        return tf.where(mask, values, tf.cast(fill, values.dtype))

    return dict(
        labels,
        cls_targets={k: where_valid(v, -2) for k, v in labels["cls_targets"].items()},
        box_targets={k: where_valid(v, 0) for k, v in labels["box_targets"].items()},
        num_positives=where_valid(labels["num_positives"], 0),
    )


class RetinaNetDetector:
    """Anchors for one input size, the RetinaNet losses and the detection generator.

    Reads the `anchor`, `architecture`, `postprocess` and `retinanet_loss` sections.
    """

    def __init__(self, params, output_size):
        """Builds the anchors and the generator.

        Args:
          params: the experiment's ParamsDict.
          output_size: (height, width) of the network input (the parser's `output_size`).
        """
        self._params = params
        anchors = dataloader_factory.anchors_from_params(params, list(output_size))
        self._anchor_boxes = {
            level: np.asarray(boxes)
            for level, boxes in anchors.unpack_labels(anchors.numpy_boxes).items()
        }
        p = params.postprocess
        self._generator = MultilevelDetectionGenerator(
            apply_nms=p.apply_nms,
            max_total_size=p.max_total_size,
            nms_iou_threshold=p.nms_iou_threshold,
            score_threshold=p.score_threshold,
            pre_nms_num_boxes=p.pre_nms_num_boxes,
            apply_sigmoid=p.apply_sigmoid,
        )
        self._loss = None

    def build_loss(self, network):
        """Builds the losses; call inside the strategy scope, after building `network`.

        A moving-average normalizer owns a variable; it is attached to `network` (as
        `loss_normalizer`) so checkpoints hold it.
        """
        loss_params = self._params.retinanet_loss
        self._loss = RetinaNetLoss(
            num_classes=self._params.architecture.num_classes,
            focal_loss_alpha=loss_params.focal_loss_alpha,
            focal_loss_gamma=loss_params.focal_loss_gamma,
            huber_loss_delta=loss_params.huber_loss_delta,
            box_loss_weight=loss_params.box_loss_weight,
            normalizer_momentum=loss_params.get("normalizer_momentum", 0.0),
        )
        if self._loss.normalizer is not None:
            network.loss_normalizer = self._loss.normalizer
            network.loss_normalizer(tf.constant(1.0), training=False)

    def losses(self, outputs, labels, training):
        """`{'total_loss', 'cls_loss', 'box_loss', 'normalizer'}` of the network's outputs."""
        if self._loss is None:
            raise RuntimeError("RetinaNetDetector.build_loss() must run before losses().")
        return self._loss(outputs, labels, training=training)

    def detections(self, outputs, image_info):
        """Detections of the class/box outputs (`ops.postprocess.MultilevelDetectionGenerator`).

        Args:
          outputs: `{'class_outputs': {...}, 'box_outputs': {...}}`.
          image_info: [b, 4, 2]; boxes are clipped to the valid extent (row 1).

        Returns:
          `num_detections [b]`, `detection_boxes [b, K, 4]` (network-input pixels),
          `detection_classes [b, K]`, `detection_scores [b, K]`.
        """
        anchor_boxes = {level: tf.constant(boxes) for level, boxes in self._anchor_boxes.items()}
        return self._generator(
            outputs["box_outputs"], outputs["class_outputs"], anchor_boxes, image_info[:, 1, :]
        )
