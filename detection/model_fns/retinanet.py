"""RetinaNet model fn: network + focal/Huber losses + static-shape detection postprocess."""

import tensorflow as tf

from detection.core.model_fn import ModelFn
from detection.core.modes import EVAL, TRAIN
from detection.dataloader import factory as dataloader_factory
from detection.evaluation import factory as evaluation_factory
from detection.model_fns.retinanet_detector import RetinaNetDetector, without_padding
from detection.modeling.networks import factory as network_factory


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
        self._detector = RetinaNetDetector(params, self._output_size)

    def build_model(self):
        network = network_factory.retinanet_network_from_params(
            self.params, dtype=self.dtype_policy
        )
        network(tf.zeros([1] + self._output_size + [3]), training=False)
        self._detector.build_loss(network)
        return network

    def _losses(self, outputs, labels, training):
        losses = self._detector.losses(outputs, labels, training=training)
        return {
            "total_loss": losses["total_loss"],
            "losses": {"cls_loss": losses["cls_loss"], "box_loss": losses["box_loss"]},
        }

    def __call__(self, model, features, labels, mode):
        outputs = model(features["images"], training=mode == TRAIN)
        if mode == TRAIN:
            return self._losses(outputs, labels, training=True)
        detections = self._detector.detections(outputs, features["image_info"])
        predictions = dict(
            detections, source_id=features["source_ids"], image_info=features["image_info"]
        )
        result = {"predictions": predictions}
        if mode == EVAL and labels is not None and not self.params.eval.skip_eval_loss:
            if "valid" in features:
                labels = without_padding(labels, features["valid"])
            result["losses"] = self._losses(outputs, labels, training=False)["losses"]
        return result

    def input_fn(self, mode):
        return dataloader_factory.input_fn_from_params(self.params, mode)

    def build_evaluator(self):
        return evaluation_factory.evaluator_from_params(self.params)
