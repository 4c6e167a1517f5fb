"""Runs a trained detector on image files and writes them with the detections drawn.

    python -m detection.tools.inference --model=retinanet --config_file=my.yaml \
        --model_dir=DIR --image_file_pattern='images/*.jpg' --label_map_file=labels.csv \
        --output_dir=OUT

Images are preprocessed exactly as in evaluation (normalize, resize keeping the aspect ratio,
pad to the parser's `output_size`); boxes are mapped back to original pixels for drawing.
"""

import argparse
import glob
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
          of the k valid detections, by decreasing score.
        """
        images, image_info = self.preprocess(image)
        predictions = self._predict(images, image_info)
        count = int(predictions["num_detections"][0])
        boxes = box_ops.boxes_to_original_pixels(
            predictions["detection_boxes"][0, :count].numpy(), image_info[0].numpy()
        )
        return {
            "boxes": boxes,
            "classes": predictions["detection_classes"][0, :count].numpy(),
            "scores": predictions["detection_scores"][0, :count].numpy(),
        }


def read_image(path):
    """Any image file Pillow reads -> uint8 [h, w, 3] RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    main_lib.add_params_flags(parser)
    parser.add_argument(
        "--model_dir",
        required=True,
        help="training directory (latest checkpoint) or a checkpoint path",
    )
    parser.add_argument("--image_file_pattern", required=True)
    parser.add_argument(
        "--label_map_file", default=None, help="'id,name' CSV or COCO JSON with categories"
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--min_score", type=float, default=0.3)
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        params = loader.load_params(args.model, args.config_file, args.params_override)
    except ParamsError as error:
        print(f"inference: error: {error}", file=sys.stderr)
        return exit_codes.USAGE
    files = sorted(glob.glob(args.image_file_pattern))
    if not files:
        print(f"inference: error: no file matches {args.image_file_pattern}", file=sys.stderr)
        return exit_codes.USAGE
    try:
        names = visualize.load_category_names(args.label_map_file) if args.label_map_file else {}
        detector = Detector(params, args.model_dir)
    except (FileNotFoundError, ValueError, ParamsError) as error:
        # A wrong --model_dir or label map, or a config of another architecture.
        print(f"inference: error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return exit_codes.USAGE
    os.makedirs(args.output_dir, exist_ok=True)
    for path in files:
        image = read_image(path)
        result = detector(image)
        drawn = visualize.draw_detections(
            image, result["boxes"], result["classes"], result["scores"], names, args.min_score
        )
        out = os.path.join(args.output_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
        Image.fromarray(drawn).save(out)
        print(f"{path}: {int(np.sum(result['scores'] >= args.min_score))} detections -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
