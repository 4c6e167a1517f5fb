"""Image classification model fn: backbone + classification head + softmax cross-entropy.

The original framework's `--model=classification` (ImageNet classifiers such as SpineNet-49):
`train.label_smoothing` smooths the one-hot targets; evaluation reports top-1 / top-5 accuracy
(`eval.type: customized`) and the cross-entropy of the real examples as `model_loss`.
"""

import tensorflow as tf

from detection.core.model_fn import ModelFn
from detection.core.modes import EVAL, TRAIN
from detection.dataloader import factory as dataloader_factory
from detection.evaluation import factory as evaluation_factory
from detection.modeling.losses.classification_loss import softmax_cross_entropy
from detection.modeling.networks import factory as network_factory


class ClassificationModelFn(ModelFn):
    """`--model=classification`: see detection/core/model_fn.py for the contract.

    Features: `images [b, H, W, 3]` (eval adds `valid [b]`). Labels: `classes [b] int32`
    (eval adds `groundtruths: {classes [b]}`). Train: `total_loss` = mean cross-entropy.
    Eval / predict predictions: `logits [b, num_classes]` float32; eval losses: `model_loss`
    over the examples with `valid` true.
    """

    def __init__(self, params):
        super().__init__(params)
        self._output_size = list(params.classification_parser.output_size)
        self._label_smoothing = float(params.train.label_smoothing)

    def build_model(self):
        network = network_factory.classification_network_from_params(
            self.params, dtype=self.dtype_policy
        )
        network(tf.zeros([1] + self._output_size + [3]), training=False)
        return network

    def __call__(self, model, features, labels, mode):
        logits = model(features["images"], training=mode == TRAIN)["logits"]
        if mode == TRAIN:
            loss = softmax_cross_entropy(logits, labels["classes"], self._label_smoothing)
            return {"total_loss": loss, "losses": {}}
        result = {"predictions": {"logits": logits}}
        if mode == EVAL and labels is not None and not self.params.eval.skip_eval_loss:
            result["losses"] = {
                "model_loss": softmax_cross_entropy(
                    logits, labels["classes"], self._label_smoothing, weights=features.get("valid")
                )
            }
        return result

    def input_fn(self, mode):
        return dataloader_factory.input_fn_from_params(self.params, mode)

    def build_evaluator(self):
        return evaluation_factory.evaluator_from_params(self.params)
