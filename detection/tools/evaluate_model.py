"""Evaluates an exported model (SavedModel or TFLite) on the eval TFRecords of the params.

    python -m detection.tools.evaluate_model --config_file=runs/shapes_retinanet/params.yaml \
        --saved_model_dir=export/shapes [--predictions_path=detections.json]

Reads `eval.eval_file_pattern` (files in sorted order, the first `eval.eval_samples` records
when set), feeds every image to the model in the model's own input type, and scores the
outputs with the evaluator of `eval.type`: COCO box / mask metrics for detection models, top-k
accuracy for classification (`image/class/label`), mean IoU for segmentation
(`image/segmentation/class/encoded`), once those models' evaluators exist. Boxes come
back in original pixels, so the COCO evaluator gets them with an identity `image_info`.
`--predictions_path` writes the detections as a COCO results JSON; `--dump_predictions_only`
skips the metrics (e.g. for a test-dev upload), as the original tool.
"""

import sys

import numpy as np
import tensorflow as tf

from detection import main_lib
from detection.configs import loader
from detection.core import exit_codes
from detection.dataloader import base_parser
from detection.dataloader.tf_example_decoder import TfExampleDecoder
from detection.evaluation import factory as evaluation_factory
from detection.hyperparameters import ParamsError
from detection.serving import loaded
from detection.tools import demo

PROG = "evaluate_model"


def _parse_args(argv):
    parser = main_lib.OneLineParser(
        prog=PROG, allow_abbrev=False, description=__doc__.split("\n\n")[0]
    )
    main_lib.add_params_flags(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--saved_model_dir", help="a SavedModel from export_saved_model")
    source.add_argument("--tflite_file", help="a .tflite file from export_tflite_model")
    parser.add_argument("--predictions_path", default="", help="write COCO results JSON here")
    parser.add_argument("--dump_predictions_only", action="store_true")
    parser.add_argument(
        "--max_batch_size", type=int, default=8, help="images per call of a dynamic-batch model"
    )
    return parser.parse_args(argv)


def eval_files(params):
    """The sorted TFRecord files of `eval.eval_file_pattern` (comma-separated globs)."""
    pattern = params.eval.eval_file_pattern
    files = sorted(f for p in pattern.split(",") if p for f in tf.io.gfile.glob(p))
    if not files:
        raise ValueError(f"eval.eval_file_pattern={pattern!r} matches no file")
    return files


def detection_groundtruths(params):
    """`fn(serialized) -> groundtruths` of the COCO evaluator (docs/CONVENTIONS.md)."""
    decoder = TfExampleDecoder()
    max_instances = params[params.architecture.parser].max_num_instances
    return lambda s: base_parser.groundtruths_for_eval(decoder.decode(s), max_instances)


def detection_predictions(results, groundtruths):
    """Per-image results (original pixels) -> one batch of the COCO evaluator's predictions."""
    size = max(1, max(len(r["scores"]) for r in results))
    batch = len(results)

    def padded(key, shape, dtype):
        out = np.zeros((batch, size) + shape, dtype)
        for i, r in enumerate(results):
            out[i, : len(r[key])] = r[key]
        return out

    heights, widths = groundtruths["height"], groundtruths["width"]
    predictions = {
        "source_id": groundtruths["source_id"],
        "image_info": np.stack(
            [[[h, w], [h, w], [1.0, 1.0], [0.0, 0.0]] for h, w in zip(heights, widths)]
        ).astype(np.float32),
        "num_detections": np.array([len(r["scores"]) for r in results], np.int32),
        "detection_boxes": padded("boxes", (4,), np.float64),
        "detection_classes": padded("classes", (), np.int32),
        "detection_scores": padded("scores", (), np.float64),
    }
    if "masks" in results[0]:
        masks = [r["masks"] for r in results]
        mask_shape = tuple(int(max(m.shape[i] for m in masks)) for i in (1, 2))
        out = np.zeros((batch, size) + mask_shape, np.float32)
        for i, m in enumerate(masks):
            out[i, : m.shape[0], : m.shape[1], : m.shape[2]] = m
        predictions["detection_masks"] = out
        if "mask_boxes" in results[0]:
            predictions["detection_outer_boxes"] = padded("mask_boxes", (4,), np.float64)
        else:
            # Full-image masks: each mask cell is one pixel, so the mask spans [0, 0, h, w].
            whole = np.array([0.0, 0.0, mask_shape[0], mask_shape[1]])
            predictions["detection_outer_boxes"] = np.tile(whole, (batch, size, 1))
    return predictions


def classification_groundtruths(unused_params):
    """`fn(serialized) -> {'classes': label}` from `image/class/label`."""
    features = {"image/class/label": tf.io.FixedLenFeature((), tf.int64)}
    return lambda s: {
        "classes": tf.cast(tf.io.parse_single_example(s, features)["image/class/label"], tf.int32)
    }


def classification_predictions(results, groundtruths):
    """Per-image classification outputs -> the accuracy evaluator's `logits [b, C]`."""
    del groundtruths
    return {"logits": np.stack([r["logits"] for r in results])}


def segmentation_groundtruths(unused_params):
    """`fn(serialized) -> {'label_map': [h, w] int32}` from `image/segmentation/class/encoded`."""
    features = {"image/segmentation/class/encoded": tf.io.FixedLenFeature((), tf.string)}

    def decode(serialized):
        encoded = tf.io.parse_single_example(serialized, features)
        label = tf.io.decode_png(encoded["image/segmentation/class/encoded"], channels=1)
        return {"label_map": tf.cast(label[:, :, 0], tf.int32)}

    return decode


def confusion_matrix(label_map, predicted, num_classes, ignore_label):
    """[C, C] int64 counts of (groundtruth, predicted) pixels; `ignore_label` and labels
    outside [0, C) are not counted."""
    label_map, predicted = np.asarray(label_map).ravel(), np.asarray(predicted).ravel()
    counted = (label_map >= 0) & (label_map < num_classes) & (label_map != ignore_label)
    predicted = np.clip(predicted[counted], 0, num_classes - 1)
    cells = label_map[counted].astype(np.int64) * num_classes + predicted
    return np.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, -1)


def _segmentation_adapter(params):
    num_classes = params.architecture.num_classes
    ignore_label = params[params.architecture.parser].get("ignore_label", 255)

    def adapt(results, groundtruths):
        matrices = [
            confusion_matrix(g, r["label_map"], num_classes, ignore_label)
            for r, g in zip(results, groundtruths["label_map"])
        ]
        return {"confusion_matrix": np.stack(matrices)}

    return adapt


# kind -> (groundtruths fn builder, predictions adapter builder, stack groundtruths)
_KINDS = {
    "detection": (detection_groundtruths, lambda params: detection_predictions, True),
    "classification": (
        classification_groundtruths,
        lambda params: classification_predictions,
        True,
    ),
    # Label maps have each image's size: kept as a list.
    "segmentation": (segmentation_groundtruths, _segmentation_adapter, False),
}


def _batches(dataset, size, stack):
    serialized, gts = [], []

    def batch():
        if stack:
            return serialized, {k: np.stack([g[k] for g in gts]) for k in gts[0]}
        return serialized, {k: [g[k] for g in gts] for k in gts[0]}

    for record, groundtruth in dataset:
        serialized.append(record.numpy())
        gts.append({k: v.numpy() for k, v in groundtruth.items()})
        if len(serialized) == size:
            yield batch()
            serialized, gts = [], []
    if serialized:
        yield batch()


def evaluate(params, model, predictions_path="", dump_only=False, batch_size=8):
    """Runs `model` over the eval records; returns the evaluator's metrics ({} if dump_only).

    Detection outputs go to the COCO evaluator as predictions in original pixels with an
    identity `image_info`; classification logits to the accuracy evaluator with the records'
    `image/class/label`; segmentation label maps become confusion matrices against the records'
    `image/segmentation/class/encoded` for the mean-IoU evaluator.
    """
    groundtruths_builder, adapter_builder, stack = _KINDS[model.kind.name]
    if predictions_path and model.kind.name != "detection":
        raise ValueError("--predictions_path writes COCO detections; this is not a detector")
    evaluator = evaluation_factory.evaluator_from_params(params)
    groundtruths_of = groundtruths_builder(params)
    adapt = adapter_builder(params)
    dataset = tf.data.TFRecordDataset(eval_files(params))
    if params.eval.eval_samples:
        dataset = dataset.take(params.eval.eval_samples)
    dataset = dataset.map(lambda s: (s, groundtruths_of(s)), num_parallel_calls=tf.data.AUTOTUNE)
    count = 0
    for serialized, groundtruths in _batches(dataset, batch_size, stack):
        examples = [loaded.Example(serialized=s) for s in serialized]
        results = model.predict(examples, max_batch_size=batch_size)
        evaluator.update(adapt(results, groundtruths), groundtruths)
        count += len(examples)
    print(f"{PROG}: ran the model on {count} images", flush=True)
    if predictions_path:
        evaluator.dump_predictions(predictions_path)
        print(f"{PROG}: wrote COCO results to {predictions_path}")
    return {} if dump_only else evaluator.evaluate()


def main(argv=None):
    try:
        args = _parse_args(sys.argv[1:] if argv is None else argv)
        if args.dump_predictions_only and not args.predictions_path:
            raise main_lib.UsageError("--dump_predictions_only needs --predictions_path")
        if args.max_batch_size < 1:
            raise main_lib.UsageError("--max_batch_size must be >= 1")
        params = loader.load_params(args.model, args.config_file, args.params_override)
        eval_files(params)
        model = loaded.load(args.saved_model_dir or args.tflite_file)
        metrics = evaluate(
            params, model, args.predictions_path, args.dump_predictions_only, args.max_batch_size
        )
    except (main_lib.UsageError, ParamsError, ValueError, FileNotFoundError) as error:
        print(f"{PROG}: error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return exit_codes.USAGE
    if metrics and "AP" in metrics:
        print(demo.format_metrics(metrics))
    elif metrics:
        print("\n".join(f" {name} = {value:.4f}" for name, value in sorted(metrics.items())))
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
