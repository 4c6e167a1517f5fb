"""ShapeMask model fn: RetinaNet's detector and losses plus the shape-prior mask branch.

Training: the RetinaNet losses, and the mask branch run on the parser's jittered groundtruth
boxes (`mask_boxes`, `mask_outer_boxes`, `mask_classes`) against its mask targets; the loss is
`cls_loss + box_loss_weight * box_loss + shape_prior_loss_weight * shape_prior_loss +
coarse_mask_loss_weight * coarse_mask_loss + fine_mask_loss_weight * fine_mask_loss`.

Evaluation / prediction: RetinaNet's detections; each detection box grown by
`architecture.outer_box_scale` (clipped to the input) is its outer box, and the mask branch
predicts the fine mask over it: `detection_masks` are sigmoid probabilities relative to
`detection_outer_boxes`, which the COCO evaluator pastes and RLE-encodes. Eval losses are
RetinaNet's (as the original framework's).
"""

import tensorflow as tf

from detection.core.model_fn import ModelFn
from detection.core.modes import EVAL, TRAIN
from detection.dataloader import factory as dataloader_factory
from detection.evaluation import factory as evaluation_factory
from detection.hyperparameters import ParamsError
from detection.model_fns.retinanet_detector import RetinaNetDetector, without_padding
from detection.modeling.losses.shapemask_losses import ShapeMaskLoss
from detection.modeling.networks import factory as network_factory
from detection.ops import boxes as box_ops


class ShapeMaskModelFn(ModelFn):
    """`--model=shapemask`: see detection/core/model_fn.py for the contract.

    Features: `images [b, H, W, 3]`, `image_info [b, 4, 2]`, `source_ids [b]`.
    Train labels: RetinaNet's plus the parser's mask samples (see
    `detection/dataloader/shapemask_parser.py`). Eval / predict predictions: RetinaNet's
    (`num_detections`, `detection_boxes`, `detection_classes`, `detection_scores`,
    `source_id`, `image_info`) plus `detection_outer_boxes [b, K, 4]` (network-input pixels)
    and `detection_masks [b, K, S * u, S * u]` (foreground probabilities over the outer boxes).
    """

    def __init__(self, params):
        super().__init__(params)
        if params.architecture.parser != "shapemask_parser":
            raise ParamsError(
                f"architecture.parser={params.architecture.parser!r}: ShapeMask trains on the "
                "mask samples of 'shapemask_parser'"
            )
        self._output_size = [int(v) for v in params.shapemask_parser.output_size]
        self._outer_box_scale = float(params.architecture.outer_box_scale)
        if self._outer_box_scale < 1.0:
            raise ParamsError(f"architecture.outer_box_scale={self._outer_box_scale} must be >= 1")
        self._detector = RetinaNetDetector(params, self._output_size)
        p = params.shapemask_loss
        try:
            self._mask_loss = ShapeMaskLoss(
                p.shape_prior_loss_weight, p.coarse_mask_loss_weight, p.fine_mask_loss_weight
            )
        except ValueError as error:
            raise ParamsError(str(error)) from None

    def build_model(self):
        network = network_factory.shapemask_network_from_params(
            self.params, dtype=self.dtype_policy
        )
        outputs = network(tf.zeros([1] + self._output_size + [3]), training=False)
        # One dummy box creates the mask heads' variables.
        height, width = self._output_size
        box = tf.constant([[[0.0, 0.0, height / 2.0, width / 2.0]]])
        network.mask_outputs(
            outputs["fpn_features"], box, box, tf.ones([1, 1], tf.int32), training=False
        )
        self._detector.build_loss(network)
        return network

    def _train(self, model, outputs, labels):
        masks = model.mask_outputs(
            outputs["fpn_features"],
            labels["mask_boxes"],
            labels["mask_outer_boxes"],
            labels["mask_classes"],
            training=True,
        )
        detector = self._detector.losses(outputs, labels, training=True)
        mask = self._mask_loss(masks, labels)
        return {
            "total_loss": detector["total_loss"] + mask["total_loss"],
            "losses": {
                "cls_loss": detector["cls_loss"],
                "box_loss": detector["box_loss"],
                "shape_prior_loss": mask["shape_prior_loss"],
                "coarse_mask_loss": mask["coarse_mask_loss"],
                "fine_mask_loss": mask["fine_mask_loss"],
            },
        }

    def __call__(self, model, features, labels, mode):
        outputs = model(features["images"], training=mode == TRAIN)
        if mode == TRAIN:
            return self._train(model, outputs, labels)
        detections = self._detector.detections(outputs, features["image_info"])
        outer_boxes = box_ops.outer_boxes(
            detections["detection_boxes"], self._outer_box_scale, self._output_size
        )
        masks = model.mask_outputs(
            outputs["fpn_features"],
            detections["detection_boxes"],
            outer_boxes,
            detections["detection_classes"],
            training=False,
        )
        predictions = dict(
            detections,
            detection_outer_boxes=outer_boxes,
            detection_masks=tf.sigmoid(masks["fine_mask_logits"]),
            source_id=features["source_ids"],
            image_info=features["image_info"],
        )
        result = {"predictions": predictions}
        if mode == EVAL and labels is not None and not self.params.eval.skip_eval_loss:
            if "valid" in features:
                labels = without_padding(labels, features["valid"])
            losses = self._detector.losses(outputs, labels, training=False)
            result["losses"] = {"cls_loss": losses["cls_loss"], "box_loss": losses["box_loss"]}
        return result

    def input_fn(self, mode):
        return dataloader_factory.input_fn_from_params(self.params, mode)

    def build_evaluator(self):
        return evaluation_factory.evaluator_from_params(self.params)
