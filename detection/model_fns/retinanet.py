"""RetinaNet model fn: network + focal/Huber losses + static-shape detection postprocess."""

import numpy as np
import tensorflow as tf

from detection.core.model_fn import ModelFn
from detection.core.modes import EVAL, TRAIN
from detection.dataloader import factory as dataloader_factory
from detection.evaluation import factory as evaluation_factory
from detection.modeling.losses.retinanet_losses import RetinaNetLoss
from detection.modeling.networks import factory as network_factory
from detection.ops.postprocess import MultilevelDetectionGenerator


def _without_padding(labels, valid):
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


class RetinaNetModelFn(ModelFn):
    """`--model=retinanet`: see detection/core/model_fn.py for the contract.

    Features: `images [b, H, W, 3]`, `image_info [b, 4, 2]`, `source_ids [b]`.
    Train labels: `cls_targets {'3': [b, h, w, A]}`, `box_targets {'3': [b, h, w, A*4]}`,
    `num_positives [b]`. Eval predictions: `num_detections [b]`,
    `detection_boxes [b, K, 4]` (input pixels), `detection_classes [b, K]`,
    `detection_scores [b, K]`, `source_id [b]`, `image_info [b, 4, 2]`.
    """

    def __init__(self, params):
        super().__init__(params)
        self._output_size = list(params.retinanet_parser.output_size)
        anchors = dataloader_factory.anchors_from_params(params, self._output_size)
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

    def build_model(self):
        network = network_factory.retinanet_network_from_params(
            self.params, dtype=self.dtype_policy
        )
        network(tf.zeros([1] + self._output_size + [3]), training=False)
        loss_params = self.params.retinanet_loss
        # Built here, inside the strategy scope, because a moving-average normalizer owns a
        # variable; attaching it to the network puts it in checkpoints.
        self._loss = RetinaNetLoss(
            num_classes=self.params.architecture.num_classes,
            focal_loss_alpha=loss_params.focal_loss_alpha,
            focal_loss_gamma=loss_params.focal_loss_gamma,
            huber_loss_delta=loss_params.huber_loss_delta,
            box_loss_weight=loss_params.box_loss_weight,
            normalizer_momentum=loss_params.get("normalizer_momentum", 0.0),
        )
        if self._loss.normalizer is not None:
            network.loss_normalizer = self._loss.normalizer
            network.loss_normalizer(tf.constant(1.0), training=False)
        return network

    def _losses(self, outputs, labels, training):
        losses = self._loss(outputs, labels, training=training)
        return {
            "total_loss": losses["total_loss"],
            "losses": {"cls_loss": losses["cls_loss"], "box_loss": losses["box_loss"]},
        }

    def __call__(self, model, features, labels, mode):
        outputs = model(features["images"], training=mode == TRAIN)
        if mode == TRAIN:
            return self._losses(outputs, labels, training=True)
        anchor_boxes = {level: tf.constant(boxes) for level, boxes in self._anchor_boxes.items()}
        detections = self._generator(
            outputs["box_outputs"],
            outputs["class_outputs"],
            anchor_boxes,
            features["image_info"][:, 1, :],
        )
        predictions = dict(
            detections, source_id=features["source_ids"], image_info=features["image_info"]
        )
        result = {"predictions": predictions}
        if mode == EVAL and labels is not None and not self.params.eval.skip_eval_loss:
            if "valid" in features:
                labels = _without_padding(labels, features["valid"])
            result["losses"] = self._losses(outputs, labels, training=False)["losses"]
        return result

    def input_fn(self, mode):
        return dataloader_factory.input_fn_from_params(self.params, mode)

    def build_evaluator(self):
        return evaluation_factory.evaluator_from_params(self.params)
