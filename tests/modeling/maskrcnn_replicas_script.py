"""Subprocess: a tiny (Cascade) Mask R-CNN trained 2 steps on 2 mirrored CPU replicas and on one
device from the same start, then evaluated; writes losses, weight differences and metrics.

    maskrcnn_replicas_script.py MODEL DATA_ROOT OUT_JSON

The losses of the original framework are normalized per local batch (foreground ROIs,
anchors, mask pixels of the replica's images), so a global batch splits exactly into replica
batches only when its halves have the same counts. Each global batch here is one image twice
([A, A], then [C, C]): each replica sees A (then C) alone. XLA is on, as on TPU.
"""

import json
import sys
import tempfile

from detection.executor import distribution

MIRRORED = distribution.build_strategy("mirrored", num_cores=2)

import keras  # noqa: E402  (after the logical CPU devices exist)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from maskrcnn_tiny import CASCADE, tiny_params  # noqa: E402

from detection.core.modes import TRAIN  # noqa: E402
from detection.dataloader import factory as dataloader_factory  # noqa: E402
from detection.executor import config as config_lib  # noqa: E402
from detection.executor import evaluation  # noqa: E402
from detection.executor import trainer as trainer_lib  # noqa: E402
from detection.model_fns.maskrcnn import MaskRCNNModelFn  # noqa: E402
from detection.tools import make_shapes_dataset  # noqa: E402


class RecordingEvaluator:
    """The COCO evaluator, also keeping every real image's detections by source id."""

    def __init__(self, evaluator):
        self._evaluator = evaluator
        self.detections = {}

    def update(self, predictions, groundtruths=None):
        valid = predictions.get("valid", np.ones_like(predictions["source_id"], bool))
        for i, source_id in enumerate(predictions["source_id"]):
            if valid[i]:
                self.detections[int(source_id)] = {
                    key: predictions[key][i].tolist()
                    for key in ("detection_boxes", "detection_scores", "detection_masks")
                }
        self._evaluator.update(predictions, groundtruths)

    def evaluate(self):
        return self._evaluator.evaluate()

    def reset(self):
        self.detections = {}
        self._evaluator.reset()


class FixedBatches(MaskRCNNModelFn):
    """Trains on fixed per-image examples [A, A, C, C], batched per replica."""

    def __init__(self, params, examples):
        super().__init__(params)
        self._examples = examples
        self.evaluator = None

    def build_evaluator(self):
        self.evaluator = RecordingEvaluator(super().build_evaluator())
        return self.evaluator

    def input_fn(self, mode):
        if mode != TRAIN:
            return super().input_fn(mode)
        global_batch = self.params.train.train_batch_size

        def dataset_fn(context=None):
            batch = context.get_per_replica_batch_size(global_batch) if context else global_batch
            dataset = tf.data.Dataset.from_tensor_slices(self._examples)
            return dataset.batch(batch, drop_remainder=True).repeat()

        return dataset_fn


def _examples(params):
    """Two training images from the real parser, each repeated: [A, A, C, C]."""
    dataset = dataloader_factory.input_fn_from_params(params, TRAIN, deterministic=True)()
    features, labels = next(iter(dataset))  # a batch of 2 images: A, C
    order = tf.constant([0, 0, 1, 1])
    return tf.nest.map_structure(lambda t: tf.gather(t, order), (features, labels))


def main(model, data_root, out_json):
    paths = make_shapes_dataset.ensure_shapes_dataset(
        data_root,
        num_train=24,
        num_val=8,
        image_size=64,
        seed=1,
        num_train_shards=2,
        num_val_shards=1,
    )
    extra = dict(CASCADE) if model == "cascade_mask_rcnn" else {}
    extra.update(
        {
            "train.jit_compile": True,
            "train.learning_rate.warmup_steps": 0,
            "train.learning_rate.init_learning_rate": 0.01,
            "eval.eval_batch_size": 4,
        }
    )
    params = tiny_params(paths, model, **extra)
    examples = _examples(params)
    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    results = {"num_replicas": MIRRORED.num_replicas_in_sync}
    weights, detections, start = {}, {}, None
    for name, strategy in (("one_device", one_device), ("mirrored", MIRRORED)):
        keras.utils.set_random_seed(0)
        model_fn = FixedBatches(params, examples)
        config = config_lib.from_params(params, strategy)
        trainer = trainer_lib.Trainer(model_fn, params, config, tempfile.mkdtemp(), strategy)
        if start is None:
            start = {v.path: v.numpy() for v in trainer.model.variables}
        else:
            for variable in trainer.model.variables:
                variable.assign(start[variable.path])
        trainer.train(2)
        weights[name] = {v.path: v.numpy() for v in trainer.model.variables}
        results[f"losses_{name}"] = trainer.last_losses
        metrics = evaluation.Evaluation(
            strategy, model_fn, trainer.model, params.eval.eval_batch_size
        ).run()
        results[f"metrics_{name}"] = metrics
        detections[name] = model_fn.evaluator.detections
    results["max_weight_diff"] = {
        path: float(np.max(np.abs(weights["mirrored"][path] - value)))
        for path, value in weights["one_device"].items()
    }
    one, two = detections["one_device"], detections["mirrored"]
    results["eval_ids"] = [sorted(one), sorted(two)]
    results["max_detection_diff"] = {
        key: max(
            float(np.max(np.abs(np.subtract(one[i][key], two[i][key])))) for i in one if i in two
        )
        for key in ("detection_boxes", "detection_scores", "detection_masks")
    }
    results["max_weight_change"] = max(
        float(np.max(np.abs(value - start[path]))) for path, value in weights["one_device"].items()
    )
    with open(out_json, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
