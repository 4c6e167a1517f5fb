"""Exports a trained model as a SavedModel that preprocesses its own input.

    python -m detection.tools.export_saved_model --config_file=configs/shapes/retinanet.yaml \
        --checkpoint_path=runs/shapes_retinanet --export_dir=export/shapes \
        --input_type=image_bytes --batch_size=None

The `serving_default` signature takes `--input_type` input (`detection/serving/input_types.py`),
decodes, resizes, pads and normalizes in the graph exactly as evaluation does, runs the model
in PREDICT mode and returns boxes in original-image pixels (`detection/serving/outputs.py`).
README.md ("Export and serving") lists the outputs and every flag.
"""

import argparse
import sys

import tensorflow as tf

from detection import main_lib
from detection.configs import loader
from detection.core import exit_codes
from detection.executor import checkpoints
from detection.hyperparameters import ParamsError
from detection.serving import factory, input_types
from detection.serving import module as serving_module
from detection.serving.outputs import OutputOptions

PROG = "export_saved_model"


def parse_bool(text):
    """'true'/'false' (and 1/0, yes/no) -> bool, as absl boolean flags accept."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_bool_flag(parser, name, default, help_text):
    """`--name`, `--name=true|false` and absl's `--noname`."""
    parser.add_argument(
        f"--{name}", type=parse_bool, nargs="?", const=True, default=default, help=help_text
    )
    parser.add_argument(f"--no{name}", dest=name, action="store_false", help=argparse.SUPPRESS)


def add_input_flags(parser, default_input_type, default_batch_size):
    """The input flags export_saved_model and export_tflite_model share."""
    parser.add_argument(
        "--input_type",
        choices=input_types.INPUT_TYPES,
        default=default_input_type,
        help="what the signature takes (README: 'Export and serving')",
    )
    parser.add_argument(
        "--batch_size",
        default=default_batch_size,
        help="batch size of the signature, or None for a dynamic batch",
    )
    parser.add_argument("--input_name", default="input", help="name of the signature input")
    parser.add_argument(
        "--input_image_size",
        default=None,
        help="'height,width' of raw_image_tensor / image_tensor inputs, or 'None,None' for "
        "any size; default: the network input size (the parser's output_size)",
    )


def input_spec_from_args(args, params):
    """The InputSpec of the flags (ValueError names a bad flag)."""
    batch_size = input_types.parse_batch_size(args.batch_size)
    image_size = None
    if args.input_image_size is not None:
        image_size = input_types.parse_image_size(args.input_image_size)
    return input_types.resolve_input_spec(
        args.input_type,
        batch_size,
        image_size,
        factory.network_input_size(params),
        args.input_name,
    )


def _parse_args(argv):
    parser = main_lib.OneLineParser(
        prog=PROG, allow_abbrev=False, description=__doc__.split("\n\n")[0]
    )
    main_lib.add_params_flags(parser)
    parser.add_argument("--export_dir", required=True, help="the SavedModel directory to write")
    parser.add_argument(
        "--checkpoint_path",
        required=True,
        help="a checkpoint (model_dir/ckpt-N) or a training directory (its latest checkpoint)",
    )
    add_input_flags(parser, input_types.IMAGE_BYTES, "1")
    add_bool_flag(parser, "output_image_info", True, "add the image_info output")
    add_bool_flag(
        parser,
        "output_normalized_coordinates",
        False,
        "boxes divided by the original image height / width",
    )
    add_bool_flag(parser, "cast_num_detections_to_float", False, "num_detections as float32")
    add_bool_flag(
        parser,
        "output_full_image_masks",
        False,
        "mask models: binary masks of the whole original image instead of box-relative "
        "probabilities",
    )
    return parser.parse_args(argv)


def describe_signature(concrete_function):
    """Lines 'name: dtype shape' of a signature's inputs and outputs."""
    inputs = tf.nest.flatten(concrete_function.structured_input_signature)
    lines = [f"  input  {s.name}: {s.dtype.name} {s.shape}" for s in inputs]
    outputs = concrete_function.structured_outputs
    lines += [f"  output {n}: {s.dtype.name} {s.shape}" for n, s in sorted(outputs.items())]
    return lines


def main(argv=None):
    try:
        args = _parse_args(sys.argv[1:] if argv is None else argv)
        params = loader.load_params(args.model, args.config_file, args.params_override)
        spec = input_spec_from_args(args, params)
        checkpoint = checkpoints.resolve_checkpoint_path(args.checkpoint_path)
        options = OutputOptions(
            output_image_info=args.output_image_info,
            output_normalized_coordinates=args.output_normalized_coordinates,
            cast_num_detections_to_float=args.cast_num_detections_to_float,
            output_full_image_masks=args.output_full_image_masks,
        )
        module = serving_module.build_serving_module(params, checkpoint, spec, options)
    except (main_lib.UsageError, ParamsError, ValueError, FileNotFoundError) as error:
        print(f"{PROG}: error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return exit_codes.USAGE
    serving_module.export_saved_model(module, args.export_dir, params)
    print(f"exported {params.type} from {checkpoint} to {args.export_dir}: serving_default")
    print("\n".join(describe_signature(module.concrete_function())))
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
