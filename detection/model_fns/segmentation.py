"""Semantic segmentation model fn: backbone + decoder + segmentation head, per-pixel softmax.

The original framework's `type: segmentation`. The loss is `segmentation_loss` (ignore label,
class weights, label smoothing); evaluation upsamples the logits (bilinear) to the label map's
size, takes the arg-max class per pixel and counts a confusion matrix per image in the step,
which the mean IoU evaluator (`eval.type: customized`) sums over the whole eval set.
"""

import tensorflow as tf

from detection.core.model_fn import ModelFn
from detection.core.modes import EVAL, TRAIN
from detection.dataloader import factory as dataloader_factory
from detection.evaluation import factory as evaluation_factory
from detection.evaluation.segmentation_iou import confusion_matrices
from detection.hyperparameters import ParamsError
from detection.modeling.losses.segmentation_loss import SegmentationLoss
from detection.modeling.networks import factory as network_factory


class SegmentationModelFn(ModelFn):
    """`--model=segmentation`: see detection/core/model_fn.py for the contract.

    Features: `images [b, H, W, 3]`, `image_info [b, 4, 2]` (eval adds `valid [b]`).
    Labels: `label_map [b, H, W] int32` (`ignore_label` where unlabelled or padded).
    Train: `total_loss` = the segmentation loss. Eval predictions:
    `confusion_matrix [b, C, C] int32` (rows: groundtruth); eval losses: `model_loss` (padded
    images excluded). Predict predictions: `classes [b, H, W] int32` (network-input pixels;
    `image_info [b, 4, 2]` maps them back).
    """

    def __init__(self, params):
        super().__init__(params)
        self._output_size = list(params.segmentation_parser.output_size)
        self._num_classes = int(params.architecture.num_classes)
        loss = params.segmentation_loss
        self._ignore_label = int(loss.ignore_label)
        try:
            self._loss = SegmentationLoss(
                num_classes=self._num_classes,
                ignore_label=loss.ignore_label,
                class_weights=loss.class_weights,
                use_groundtruth_dimension=loss.use_groundtruth_dimension,
                label_smoothing=loss.label_smoothing,
            )
        except ValueError as error:
            raise ParamsError(str(error).splitlines()[0]) from None

    def build_model(self):
        network = network_factory.segmentation_network_from_params(
            self.params, dtype=self.dtype_policy
        )
        network(tf.zeros([1] + self._output_size + [3]), training=False)
        return network

    def _predicted_classes(self, logits):
        """[b, h, w, C] logits -> [b, H, W] int32 classes at the network input's size."""
        logits = tf.image.resize(logits, self._output_size, method="bilinear")
        return tf.argmax(logits, axis=-1, output_type=tf.int32)

    def __call__(self, model, features, labels, mode):
        logits = model(features["images"], training=mode == TRAIN)["logits"]
        if mode == TRAIN:
            return {"total_loss": self._loss(logits, labels["label_map"]), "losses": {}}
        classes = self._predicted_classes(logits)
        if mode != EVAL:
            return {"predictions": {"classes": classes, "image_info": features["image_info"]}}
        label_map = labels["label_map"]
        if "valid" in features:
            # Padding images arrive filled with -1; make them unlabelled explicitly.
            valid = tf.reshape(features["valid"], [-1, 1, 1])
            label_map = tf.where(valid, label_map, self._ignore_label)
        result = {
            "predictions": {
                "confusion_matrix": confusion_matrices(
                    label_map, classes, self._num_classes, self._ignore_label
                )
            }
        }
        if not self.params.eval.skip_eval_loss:
            result["losses"] = {"model_loss": self._loss(logits, label_map)}
        return result

    def input_fn(self, mode):
        return dataloader_factory.input_fn_from_params(self.params, mode)

    def build_evaluator(self):
        return evaluation_factory.evaluator_from_params(self.params)
