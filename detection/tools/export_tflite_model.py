"""Exports a trained model (or an exported SavedModel) as a TFLite model.

    python -m detection.tools.export_tflite_model --config_file=configs/shapes/retinanet.yaml \
        --checkpoint_path=runs/shapes_retinanet --output_dir=export/tflite \
        --quantization=dynamic_range

Writes `output_dir/model.tflite` and `output_dir/export.json` (how to feed it, read by
`evaluate_model` and `inference`). The input is `raw_image_tensor` by default: float32
normalized images of the network input size, batch 1, as the host's evaluation preprocessing
produces them; `image_tensor` (uint8, resized in the model) also converts to built-in ops only.
Full-integer calibration reads `--num_calibration_images` images of
`--representative_file_pattern` (default: the params' `eval.eval_file_pattern`). Every
converted model is test-run in TFLite (on each calibration image when there are some) and
nothing is written if it fails. See `detection/serving/tflite.py` for the ops and the
quantization modes.
"""

import json
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf

from detection import main_lib
from detection.configs import loader
from detection.core import exit_codes
from detection.executor import checkpoints
from detection.hyperparameters import ParamsError
from detection.serving import factory, input_types, loaded, tflite
from detection.serving import module as serving_module
from detection.serving.outputs import OutputOptions
from detection.tools import export_saved_model

PROG = "export_tflite_model"
MODEL_FILE = "model.tflite"


def _parse_args(argv):
    parser = main_lib.OneLineParser(
        prog=PROG, allow_abbrev=False, description=__doc__.split("\n\n")[0]
    )
    main_lib.add_params_flags(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint_path",
        help="a checkpoint (model_dir/ckpt-N) or a training directory (its latest checkpoint)",
    )
    source.add_argument(
        "--saved_model_dir",
        help="convert the signature of a SavedModel written by export_saved_model instead",
    )
    parser.add_argument("--output_dir", required=True, help="where model.tflite goes")
    parser.add_argument("--quantization", choices=tflite.QUANTIZATIONS, default=tflite.FLOAT32)
    parser.add_argument(
        "--representative_file_pattern",
        default=None,
        help="TFRecords for full_integer calibration; default: eval.eval_file_pattern",
    )
    parser.add_argument("--num_calibration_images", type=int, default=100)
    export_saved_model.add_bool_flag(
        parser,
        "allow_select_tf_ops",
        False,
        "allow TensorFlow ops without a TFLite built-in (needed by image_bytes / tf_example)",
    )
    export_saved_model.add_input_flags(parser, input_types.RAW_IMAGE_TENSOR, "1")
    export_saved_model.add_bool_flag(parser, "output_image_info", True, "add image_info")
    export_saved_model.add_bool_flag(
        parser, "output_normalized_coordinates", False, "normalized boxes"
    )
    export_saved_model.add_bool_flag(
        parser, "cast_num_detections_to_float", False, "num_detections as float32"
    )
    return parser.parse_args(argv)


def _from_checkpoint(args, params, scratch_dir):
    """Exports a SavedModel into `scratch_dir` and returns what `_from_saved_model` does.

    The converter freezes the variables of a loaded SavedModel's signature into constants; from
    the live function it would keep them as TFLite resource variables, which calibration and
    most runtimes cannot use.
    """
    spec = export_saved_model.input_spec_from_args(args, params)
    options = OutputOptions(
        output_image_info=args.output_image_info,
        output_normalized_coordinates=args.output_normalized_coordinates,
        cast_num_detections_to_float=args.cast_num_detections_to_float,
    )
    checkpoint = checkpoints.resolve_checkpoint_path(args.checkpoint_path)
    module = serving_module.build_serving_module(params, checkpoint, spec, options)
    serving_module.export_saved_model(module, scratch_dir, params)
    return _from_saved_model(scratch_dir)


def _from_saved_model(path):
    info = loaded.read_export_info(path) if tf.io.gfile.isdir(path) else None
    if info is None:
        raise FileNotFoundError(f"{path} is not a SavedModel written by export_saved_model")
    saved = tf.saved_model.load(path)
    function = saved.signatures["serving_default"]
    size = info["input_image_size"]
    spec = input_types.InputSpec(
        info["input_type"], info["batch_size"], None if size is None else tuple(size)
    )
    return function, saved, spec, info


def _representative(args, params, spec, info):
    if args.quantization != tflite.FULL_INTEGER:
        return None
    pattern = args.representative_file_pattern or (params.eval.eval_file_pattern if params else "")
    if not pattern:
        raise ValueError(
            "--quantization=full_integer needs --representative_file_pattern or "
            "eval.eval_file_pattern in the params"
        )
    kind = factory.KINDS[info["kind"]]
    network_size = tuple(info["network_input_size"])
    # Fail now on a pattern that matches nothing, not deep inside the converter.
    next(tflite.representative_inputs(pattern, spec, kind.preprocess, network_size, 1))
    return lambda: tflite.representative_inputs(
        pattern, spec, kind.preprocess, network_size, args.num_calibration_images
    )


def _check_inputs(spec, info, representative):
    """Input batches to run a converted model on: every calibration batch, or one made up."""
    if representative is not None:
        return (inputs[0] for inputs in representative())
    if spec.input_type in input_types.TENSOR_INPUT_TYPES:
        size = spec.image_size or tuple(info["network_input_size"])
        dtype = np.float32 if spec.input_type == input_types.RAW_IMAGE_TENSOR else np.uint8
        return [np.zeros([spec.batch_size, *size, 3], dtype)]
    image = tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8)).numpy()
    if spec.input_type == input_types.TF_EXAMPLE:
        feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
        features = tf.train.Features(feature={"image/encoded": feature})
        image = tf.train.Example(features=features).SerializeToString()
    return [np.array([image] * spec.batch_size, dtype=object)]


def _check_convertible(spec, allow_select_tf_ops):
    if spec.batch_size is None or (spec.image_size is not None and spec.image_size[0] is None):
        raise ValueError(
            "TFLite models take a static input shape: give --batch_size N and, for tensor "
            "inputs, --input_image_size H,W"
        )
    if spec.input_type not in input_types.TENSOR_INPUT_TYPES and not allow_select_tf_ops:
        raise ValueError(
            f"--input_type={spec.input_type} decodes images with TensorFlow ops that TFLite "
            "has no built-in for; pass --allow_select_tf_ops (Flex delegate) or use "
            "raw_image_tensor / image_tensor"
        )


def main(argv=None):
    with tempfile.TemporaryDirectory() as scratch_dir:
        return _main(sys.argv[1:] if argv is None else argv, scratch_dir)


def _main(argv, scratch_dir):
    try:
        args = _parse_args(argv)
        params = None
        if args.checkpoint_path or args.config_file or args.params_override:
            params = loader.load_params(args.model, args.config_file, args.params_override)
        if args.checkpoint_path:
            if params is None:
                raise ValueError("--checkpoint_path needs --config_file or --model")
            function, trackable, spec, info = _from_checkpoint(args, params, scratch_dir)
        else:
            function, trackable, spec, info = _from_saved_model(args.saved_model_dir)
        _check_convertible(spec, args.allow_select_tf_ops)
        if args.num_calibration_images < 1:
            raise ValueError("--num_calibration_images must be >= 1")
        representative = _representative(args, params, spec, info)
    except (main_lib.UsageError, ParamsError, ValueError, FileNotFoundError) as error:
        print(f"{PROG}: error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return exit_codes.USAGE
    content = tflite.convert(
        function, trackable, args.quantization, representative, args.allow_select_tf_ops
    )
    ops = tflite.op_names(content)
    flex = [op for op in ops if op.startswith("Flex")]
    try:
        # TensorFlow's own TFLite interpreter has no Flex delegate: select-op models cannot
        # be test-run here.
        if not flex:
            num_checked = tflite.check_runs(content, _check_inputs(spec, info, representative))
    except RuntimeError as error:
        print(
            f"{PROG}: error: the {args.quantization} model does not run in TFLite: "
            f"{str(error).strip().splitlines()[0]}",
            file=sys.stderr,
        )
        return exit_codes.USAGE
    tf.io.gfile.makedirs(args.output_dir)
    path = os.path.join(args.output_dir, MODEL_FILE)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(content)
    info = dict(info, quantization=args.quantization)
    with tf.io.gfile.GFile(
        os.path.join(args.output_dir, serving_module.EXPORT_INFO_FILE), "w"
    ) as f:
        f.write(json.dumps(info, indent=2) + "\n")
    print(f"wrote {path} ({len(content) / 1e6:.2f} MB, {args.quantization})")
    print(f"ops: {', '.join(ops)}")
    print(f"select TF ops: {', '.join(flex) if flex else 'none'}")
    if flex:
        print("not test-run: running select TF ops needs a TFLite runtime with the Flex delegate")
    else:
        print(f"test-run on {num_checked} input batch(es)")
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
