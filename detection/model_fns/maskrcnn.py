"""(Cascade) Faster / Mask R-CNN model fn: network + RPN / Fast R-CNN / mask losses.

`--model=mask_rcnn` (Faster R-CNN with `architecture.include_mask: false`) and
`--model=cascade_mask_rcnn` (`roi_sampling.cascade_iou_thresholds` adds stages) share it.

Evaluation computes no losses, as the original's Mask R-CNN evaluation: its eval labels carry
only the COCO groundtruths (no RPN targets or instance masks), so padded eval examples
(`features['valid']`) only need to be skipped by the evaluator, which it does.
"""

import numpy as np
import tensorflow as tf

from detection.core.model_fn import ModelFn
from detection.core.modes import TRAIN
from detection.dataloader import factory as dataloader_factory
from detection.evaluation import factory as evaluation_factory
from detection.hyperparameters import ParamsError
from detection.modeling.losses.maskrcnn_losses import MaskRCNNLoss
from detection.modeling.networks import factory as network_factory

DETECTION_KEYS = ("num_detections", "detection_boxes", "detection_classes", "detection_scores")


class MaskRCNNModelFn(ModelFn):
    """`--model=mask_rcnn` / `cascade_mask_rcnn`: see detection/core/model_fn.py.

    Features: `images [b, H, W, 3]`, `image_info [b, 4, 2]`, `source_ids [b]`.
    Train labels (the Mask R-CNN parser): `rpn_score_targets {level: [b, h, w, A]}`,
    `rpn_box_targets {level: [b, h, w, A * 4]}`, `gt_boxes [b, M, 4]`, `gt_classes [b, M]`,
    with masks `gt_masks [b, M, S, S]`.
    Train losses: `rpn_score_loss`, `rpn_box_loss`, `fast_rcnn_class_loss`,
    `fast_rcnn_box_loss` (means over the cascade stages), `mask_loss` (with masks).
    Eval / predict predictions: `num_detections [b]`, `detection_boxes [b, K, 4]` (input
    pixels), `detection_classes [b, K]`, `detection_scores [b, K]`, with masks
    `detection_masks [b, K, m, m]` (probabilities over each detection box), `source_id [b]`,
    `image_info [b, 4, 2]`; K = `postprocess.max_total_size`, m = `mask_target_size`.
    """

    def __init__(self, params):
        super().__init__(params)
        # Fails early, naming the key, rather than when the model is built.
        network_factory.cascade_iou_thresholds(params)
        self._output_size = [int(v) for v in params.maskrcnn_parser.output_size]
        anchors = dataloader_factory.anchors_from_params(params, self._output_size)
        self._anchor_boxes = {
            level: np.asarray(boxes)
            for level, boxes in anchors.unpack_labels(anchors.numpy_boxes).items()
        }
        self._include_mask = bool(params.architecture.include_mask)
        try:
            self._loss = MaskRCNNLoss(
                rpn_batch_size_per_im=params.rpn_score_loss.rpn_batch_size_per_im,
                rpn_huber_loss_delta=params.rpn_box_loss.huber_loss_delta,
                frcnn_huber_loss_delta=params.frcnn_box_loss.huber_loss_delta,
                class_agnostic_bbox_pred=params.frcnn_head.class_agnostic_bbox_pred,
                include_mask=self._include_mask,
            )
        except ValueError as error:
            raise ParamsError(str(error)) from None

    def build_model(self):
        network = network_factory.maskrcnn_network_from_params(
            self.params, self._anchor_boxes, dtype=self.dtype_policy
        )
        # Inference runs every part (the mask head on the detections), so one call on a dummy
        # image creates every variable.
        network(
            {
                "images": tf.zeros([1] + self._output_size + [3]),
                "image_info": tf.constant([[self._output_size] * 2 + [[1.0, 1.0], [0.0, 0.0]]]),
            },
            training=False,
        )
        return network

    def __call__(self, model, features, labels, mode):
        inputs = {"images": features["images"], "image_info": features["image_info"]}
        if mode == TRAIN:
            inputs.update(gt_boxes=labels["gt_boxes"], gt_classes=labels["gt_classes"])
            if self._include_mask:
                inputs["gt_masks"] = labels["gt_masks"]
            losses = self._loss(model(inputs, training=True), labels)
            total = losses.pop("total_loss")
            return {"total_loss": total, "losses": losses}
        outputs = model(inputs, training=False)
        keys = DETECTION_KEYS + (("detection_masks",) if self._include_mask else ())
        predictions = {key: outputs[key] for key in keys}
        predictions.update(source_id=features["source_ids"], image_info=features["image_info"])
        return {"predictions": predictions}

    def input_fn(self, mode):
        return dataloader_factory.input_fn_from_params(self.params, mode)

    def build_evaluator(self):
        return evaluation_factory.evaluator_from_params(self.params)
