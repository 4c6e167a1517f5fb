"""Runs a trained detector on image files and writes them with the detections drawn.

    python -m detection.tools.inference --model=retinanet --config_file=my.yaml \
        --model_dir=DIR --image_file_pattern='images/*.jpg' --label_map_file=labels.csv \
        --output_dir=OUT [--output_json=detections.json]

The model is a training directory or checkpoint (`--model_dir`, with the params flags), or an
exported model: `--saved_model_dir` (export_saved_model) or `--tflite_file`
(export_tflite_model), which need no params. Images are preprocessed exactly as in evaluation
(normalize, resize keeping the aspect ratio, pad to the parser's `output_size`); boxes are
mapped back to original pixels for drawing, and instance masks (Mask R-CNN, ShapeMask: over the outer boxes; from a
checkpoint) are pasted into the original image as in COCO evaluation. `--output_json` writes every
detection as a COCO result (`image_id` is the file name's number when it has one, else its
index; `file_name` is added).
"""

import argparse
import glob
import json
import os
import sys

import numpy as np
import tensorflow as tf
from PIL import Image

from detection import main_lib
from detection.configs import loader
from detection.core import exit_codes
from detection.core.modes import PREDICT
from detection.dataloader import preprocess_ops
from detection.executor import checkpoints
from detection.hyperparameters import ParamsError
from detection.model_fns import factory as model_fn_factory
from detection.ops import boxes as box_ops
from detection.ops import masks as mask_ops
from detection.serving import loaded
from detection.tools import visualize


class Detector:
    """A restored model fn + model with a compiled single-image predict step."""

    def __init__(self, params, checkpoint):
        """Args:
          params: the experiment's params (the model type and parser output size).
          checkpoint: a checkpoint path or a model_dir (its latest checkpoint is used).

        Raises:
          FileNotFoundError: no checkpoint at `checkpoint`.
          ValueError: the checkpoint does not hold this model's variables.
        """
        path = checkpoints.resolve_checkpoint_path(checkpoint)
        self.checkpoint_path = path
        self._model_fn = model_fn_factory.model_fn_from_params(params)
        self._model = self._model_fn.build_model()
        checkpoints.restore_model(self._model, path)
        self._output_size = list(params[params.architecture.parser].output_size)
        self._predict = tf.function(self._predict_batch, jit_compile=True)

    def _predict_batch(self, images, image_info):
        features = {
            "images": images,
            "image_info": image_info,
            "source_ids": tf.zeros([tf.shape(images)[0]], tf.int64),
        }
        return self._model_fn(self._model, features, None, PREDICT)["predictions"]

    def preprocess(self, image):
        """uint8 [h, w, 3] -> (float32 [1, H, W, 3], image_info [1, 4, 2])."""
        normalized = preprocess_ops.normalize_image(tf.convert_to_tensor(image))
        resized, image_info = preprocess_ops.resize_and_crop_image(normalized, self._output_size)
        return resized[tf.newaxis], image_info[tf.newaxis]

    def __call__(self, image):
        """Detects objects in one uint8 [h, w, 3] image.

        Returns:
          {'boxes': [k, 4] yxyx original pixels, 'classes': [k], 'scores': [k]} NumPy arrays
          of the k valid detections, by decreasing score; for a model with masks also
          'masks': [k, h, w] uint8 {0, 1}, each box-relative mask pasted into the image
          (over its outer box for ShapeMask).
        """
        images, image_info = self.preprocess(image)
        predictions = self._predict(images, image_info)
        count = int(predictions["num_detections"][0])
        boxes = box_ops.boxes_to_original_pixels(
            predictions["detection_boxes"][0, :count].numpy(), image_info[0].numpy()
        )
        result = {
            "boxes": boxes,
            "classes": predictions["detection_classes"][0, :count].numpy(),
            "scores": predictions["detection_scores"][0, :count].numpy(),
        }
        if "detection_masks" in predictions:
            height, width = image.shape[:2]
            masks = predictions["detection_masks"][0, :count].numpy()
            # ShapeMask's masks span the outer boxes, Mask R-CNN's the detection boxes.
            mask_boxes = boxes
            if "detection_outer_boxes" in predictions:
                mask_boxes = box_ops.boxes_to_original_pixels(
                    predictions["detection_outer_boxes"][0, :count].numpy(),
                    image_info[0].numpy(),
                )
            result["masks"] = (
                np.stack(
                    [
                        mask_ops.paste_instance_mask(m, b, height, width)
                        for m, b in zip(masks, mask_boxes)
                    ]
                )
                if count
                else np.zeros((0, height, width), np.uint8)
            )
        return result


def read_image(path):
    """Any image file Pillow reads -> uint8 [h, w, 3] RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    main_lib.add_params_flags(parser)
    parser.add_argument(
        "--model_dir", default=None, help="training directory (latest checkpoint) or a checkpoint"
    )
    parser.add_argument("--saved_model_dir", default=None, help="a SavedModel directory")
    parser.add_argument("--tflite_file", default=None, help="a .tflite model")
    parser.add_argument("--image_file_pattern", required=True)
    parser.add_argument(
        "--label_map_file", default=None, help="'id,name' CSV or COCO JSON with categories"
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--min_score", type=float, default=0.3)
    parser.add_argument("--output_json", default=None, help="write COCO results JSON here")
    return parser.parse_args(argv)


class ExportedDetector:
    """An exported detection model with the `Detector` call: image -> original-pixel results."""

    def __init__(self, path):
        self._model = loaded.load(path)
        if self._model.kind.name != "detection":
            raise ValueError(f"{path} is a {self._model.kind.name} model, not a detector")

    def __call__(self, image):
        result = self._model.predict([loaded.Example(image=image)])[0]
        return {key: result[key] for key in ("boxes", "classes", "scores")}


def _detector(args):
    sources = [a for a in (args.model_dir, args.saved_model_dir, args.tflite_file) if a]
    if len(sources) != 1:
        raise ValueError("give exactly one of --model_dir, --saved_model_dir, --tflite_file")
    if args.model_dir:
        params = loader.load_params(args.model, args.config_file, args.params_override)
        return Detector(params, args.model_dir)
    return ExportedDetector(args.saved_model_dir or args.tflite_file)


def coco_results(image_id, path, result):
    """COCO result dicts (`bbox` [x, y, w, h] in original pixels) of one image's detections."""
    return [
        {
            "image_id": image_id,
            "file_name": os.path.basename(path),
            "category_id": int(category),
            "bbox": [float(v) for v in box_ops.yxyx_to_xywh(np.asarray(box, np.float64))],
            "score": float(score),
        }
        for box, category, score in zip(result["boxes"], result["classes"], result["scores"])
    ]


def main(argv=None):
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    files = sorted(glob.glob(args.image_file_pattern))
    if not files:
        print(f"inference: error: no file matches {args.image_file_pattern}", file=sys.stderr)
        return exit_codes.USAGE
    try:
        names = visualize.load_category_names(args.label_map_file) if args.label_map_file else {}
        detector = _detector(args)
    except (FileNotFoundError, ValueError, ParamsError) as error:
        # A wrong model path, label map or config (of another architecture, say).
        print(f"inference: error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return exit_codes.USAGE
    os.makedirs(args.output_dir, exist_ok=True)
    results = []
    for index, path in enumerate(files):
        image = read_image(path)
        result = detector(image)
        drawn = visualize.draw_detections(
            image,
            result["boxes"],
            result["classes"],
            result["scores"],
            names,
            args.min_score,
            masks=result.get("masks"),
        )
        out = os.path.join(args.output_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
        Image.fromarray(drawn).save(out)
        print(f"{path}: {int(np.sum(result['scores'] >= args.min_score))} detections -> {out}")
        stem = os.path.splitext(os.path.basename(path))[0]
        results += coco_results(int(stem) if stem.isdigit() else index, path, result)
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as f:
            json.dump(results, f)
        print(f"{len(results)} detections -> {args.output_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
