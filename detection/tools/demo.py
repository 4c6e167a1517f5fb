"""The README's main job (`make demo`): shapes dataset -> train -> COCO eval -> a picture.

    python -m detection.tools.demo [--model mask_rcnn] [--model_dir runs/shapes_mask_rcnn]

1. Generates the synthetic shapes dataset in `--data_dir` unless it is already there.
2. Trains and evaluates the `--model` of `configs/shapes/<model>.yaml` (RetinaNet by default;
   `mask_rcnn`, `faster_rcnn`, `cascade_mask_rcnn`, `shapemask`) through the same
   command-line path as `main.py --mode=train_and_eval` (resuming if interrupted).
   `--config_file` may be repeated (applied in order, as main.py's), e.g. ShapeMask's
   partially supervised split on top of its shapes config. ShapeMask first makes its shape
   priors (`make_shape_priors`) from the train records when the prior file is missing: the
   file of `shapemask_head.shape_prior_path`, moved into `--data_dir` unless
   `--params_override` names it, clustered as the params say (`architecture.num_classes`,
   `mask_crop_size` pixels, per class unless `use_category_for_mask: false`, the masks of
   `shapemask_parser.mask_train_class` only) into `--num_clusters` priors.
3. Prints the COCO box (and mask) metrics of the final checkpoint.
4. Writes `model_dir/detections.png`: val images with predicted masks, boxes, labels and
   scores.

`--model=classification` / `--model=segmentation` do steps 1-2 with the shapes variant and
`configs/shapes/<model>.yaml` instead, then print the final top-k accuracy / IoU metrics.

Bad flags end the process with exit code 2 and one line on stderr (`detection.cli`); errors of
the training run itself are main.py's (same codes).
"""

import sys

from detection import cli

if __name__ == "__main__":
    # Before the imports below load TensorFlow, which prints start-up lines on stderr.
    cli.quiet_tensorflow()

import glob  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from detection import main_lib  # noqa: E402
from detection.configs import loader  # noqa: E402
from detection.configs.merge import merge_dicts  # noqa: E402
from detection.hyperparameters import ParamsError, parse_override  # noqa: E402
from detection.tools import make_shape_priors, make_shapes_dataset  # noqa: E402

PROG = "demo"

# --model -> the shapes dataset variant it trains on.
_VARIANTS = {
    "retinanet": "detection",
    "mask_rcnn": "detection",
    "faster_rcnn": "detection",  # mask_rcnn without masks
    "cascade_mask_rcnn": "detection",
    "shapemask": "detection",
    "classification": "classification",
    "segmentation": "segmentation",
}

_METRIC_ROWS = [
    ("AP", "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
    ("AP50", "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]"),
    ("AP75", "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]"),
    ("APs", "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]"),
    ("APm", "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]"),
    ("APl", "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"),
    ("ARmax1", "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]"),
    ("ARmax10", "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]"),
    ("ARmax100", "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
    ("ARs", "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]"),
    ("ARm", "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]"),
    ("ARl", "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"),
]


def format_metrics(metrics, prefix=""):
    """The COCO summary table (pycocotools' layout); -1 means no object of that size.

    `prefix` selects the mask metrics ('mask_') of an evaluation with masks.
    """
    return "\n".join(
        f" {label} = {metrics[prefix + key]:.3f}"
        for key, label in _METRIC_ROWS
        if prefix + key in metrics
    )


def latest_metrics(model_dir):
    """(step, metrics) of the newest `model_dir/eval/metrics-<step>.json`."""
    files = glob.glob(os.path.join(model_dir, "eval", "metrics-*.json"))
    if not files:
        raise FileNotFoundError(f"no eval metrics in {model_dir}/eval")
    path = max(files, key=lambda f: int(f.rsplit("-", 1)[1].split(".")[0]))
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return int(path.rsplit("-", 1)[1].split(".")[0]), data.get("metrics", data)


def draw_val_detections(argv, paths, model_dir, num_images, min_score):
    """Runs the trained model on val images and saves a grid with detections drawn."""
    from detection.tools import inference, visualize  # TensorFlow: only after training.

    args = main_lib.build_parser().parse_args(argv)
    params = main_lib.resolve_params(args)
    detector = inference.Detector(params, model_dir)
    names = visualize.load_category_names(paths["val_annotations"])
    files = sorted(glob.glob(os.path.join(paths["val_image_dir"], "*")))[:num_images]
    drawn = []
    for path in files:
        image = inference.read_image(path)
        result = detector(image)
        canvas = visualize.draw_detections(
            image,
            result["boxes"],
            result["classes"],
            result["scores"],
            names,
            min_score,
            masks=result.get("masks"),
        )
        # Upscale 128 px scenes 3x (nearest) so that labels stay readable.
        drawn.append(
            np.kron(canvas, np.ones((3, 3, 1), np.uint8)) if image.shape[0] <= 256 else canvas
        )
    out = os.path.join(model_dir, "detections.png")
    Image.fromarray(visualize.image_grid(drawn, columns=4)).save(out)
    return out


def ensure_shape_priors(config_files, override, extra, data_dir, num_clusters):
    """Makes ShapeMask's prior file from the train records unless it exists.

    The file is `shapemask_head.shape_prior_path` of the params, moved into `data_dir` (the
    priors belong to the dataset they were clustered from) unless `extra` (the user's
    `--params_override`) names it; an empty path means no priors and makes nothing.

    Args:
      config_files: the demo's config files.
      override: the params override the demo trains with (data paths included).
      extra: the user's own override.
      data_dir: the shapes dataset directory.
      num_clusters: priors per class.

    Returns:
      `override` with the prior file's path.

    Raises:
      ParamsError: bad params.
      RuntimeError: make_shape_priors failed (it printed why).
    """
    params = loader.load_params(None, config_files, override)
    path = params.shapemask_head.shape_prior_path
    if not path:
        return override
    if "shape_prior_path" not in extra.get("shapemask_head", {}):
        path = os.path.join(data_dir, os.path.basename(path))
        override = merge_dicts(override, {"shapemask_head": {"shape_prior_path": path}})
    if os.path.exists(path):
        print(f"Shape priors: {path} (exists; delete it to cluster again)")
        return override
    argv = [
        f"--file_pattern={params.train.train_file_pattern}",
        f"--output_path={path}",
        f"--num_classes={params.architecture.num_classes}",
        f"--num_clusters={num_clusters}",
        f"--prior_size={params.shapemask_head.mask_crop_size}",
        f"--classes={params.shapemask_parser.mask_train_class}",
    ]
    if not params.shapemask_head.use_category_for_mask:
        argv.append("--class_agnostic")
    print("Shape priors: python -m detection.tools.make_shape_priors " + " ".join(argv))
    if make_shape_priors.main(argv):
        raise RuntimeError(f"make_shape_priors failed for {path}")
    return override


def build_parser():
    parser = cli.OneLineParser(
        prog=f"python -m detection.tools.{PROG}",
        allow_abbrev=False,
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--model", choices=sorted(_VARIANTS), default="retinanet")
    parser.add_argument("--model_dir", default=None, help="default: runs/shapes_<model>")
    parser.add_argument("--data_dir", default=None, help="default: data/shapes[_<variant>]")
    parser.add_argument(
        "--config_file",
        action="append",
        default=None,
        help="default: configs/shapes/<model>.yaml; repeatable, applied in order",
    )
    parser.add_argument(
        "--num_clusters",
        type=int,
        default=8,
        help="ShapeMask: shape priors per class when the demo makes the prior file (>= 1)",
    )
    parser.add_argument(
        "--params_override",
        default="",
        help="extra overrides, e.g. 'train.total_steps=100' for a quick run",
    )
    parser.add_argument("--num_images", type=int, default=8, help="val images to draw (>= 1)")
    parser.add_argument(
        "--min_score", type=float, default=0.4, help="draw detections scoring at least this"
    )
    return parser


def _parse_args(argv):
    args = build_parser().parse_args(argv)
    variant = _VARIANTS[args.model]
    args.model_dir = args.model_dir or os.path.join("runs", f"shapes_{args.model}")
    data_dir = "shapes" if variant == "detection" else f"shapes_{variant}"
    args.data_dir = args.data_dir or os.path.join("data", data_dir)
    args.config_file = args.config_file or [os.path.join("configs", "shapes", f"{args.model}.yaml")]
    if args.num_images < 1:
        raise cli.UsageError(f"--num_images must be >= 1, got {args.num_images}")
    if not 0.0 <= args.min_score <= 1.0:
        raise cli.UsageError(f"--min_score must be in [0, 1], got {args.min_score}")
    if args.num_clusters < 1:
        raise cli.UsageError(f"--num_clusters must be >= 1, got {args.num_clusters}")
    for path in args.config_file:
        if not os.path.isfile(path):
            raise cli.UsageError(f"--config_file={path}: no such file")
    if os.path.exists(args.model_dir) and not os.path.isdir(args.model_dir):
        raise cli.UsageError(f"--model_dir={args.model_dir} is not a directory")
    try:
        extra = parse_override(args.params_override)
    except ParamsError as error:
        raise cli.UsageError(f"--params_override: {error}") from None
    return args, variant, extra


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, variant, extra = _parse_args(argv)
        paths = make_shapes_dataset.ensure_shapes_dataset(args.data_dir, variant=variant)
    except (cli.UsageError, ValueError) as error:
        cli.print_error(PROG, error)
        return cli.EXIT_USAGE
    except OSError as error:
        cli.print_error(PROG, f"cannot write --data_dir={args.data_dir}: {error}")
        return cli.EXIT_USAGE
    data = {
        "train": {"train_file_pattern": paths["train_file_pattern"]},
        "eval": {"eval_file_pattern": paths["val_file_pattern"]},
    }
    if variant == "detection":
        data["eval"]["val_json_file"] = paths["val_annotations"]
    override = merge_dicts(data, extra)
    if args.model == "shapemask":
        try:
            override = ensure_shape_priors(
                args.config_file, override, extra, args.data_dir, args.num_clusters
            )
        except ParamsError as error:
            cli.print_error(PROG, error)
            return cli.EXIT_USAGE
        except RuntimeError:  # make_shape_priors printed its one-line error.
            return cli.EXIT_USAGE
    cli_args = [f"--config_file={path}" for path in args.config_file] + [
        f"--params_override={json.dumps(override, default=str)}",
        f"--model_dir={args.model_dir}",
    ]
    code = main_lib.run(cli_args + ["--mode=train_and_eval"])
    if code:
        return code
    step, metrics = latest_metrics(args.model_dir)
    if variant != "detection":
        print(f"\nMetrics on {paths['val_file_pattern']} (step {step}):")
        for name, value in sorted(metrics.items()):
            print(f"  {name} = {value:.4f}")
        return 0
    print(f"\nCOCO box metrics on {paths['val_annotations']} (step {step}):")
    print(format_metrics(metrics))
    if "mask_AP" in metrics:
        print(f"\nCOCO mask metrics (step {step}):")
        print(format_metrics(metrics, prefix="mask_"))
    picture = draw_val_detections(cli_args, paths, args.model_dir, args.num_images, args.min_score)
    print(f"\nDetections on {args.num_images} val images: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
