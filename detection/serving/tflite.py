"""Converts a serving function to TFLite: float32, dynamic-range or full-integer quantized.

Every op of the tensor input types converts to TFLite built-in ops: convolutions, batch norm
(folded into multiplies and adds), resize (RESIZE_BILINEAR), padding, the box decoder, top-k
(TOPK_V2) and the static-shape NMS loop (WHILE with ARG_MAX, GATHER, ONE_HOT, SELECT_V2...).
`image_bytes` and `tf_example` need `DecodeImage` / `ParseExample`, which TFLite has no
built-in for: they convert only with select TF ops (`allow_select_tf_ops`) and run only in a
TFLite runtime with the Flex delegate, which TensorFlow 2.21's `tf.lite.Interpreter` lacks.

Quantization (`tf.lite.Optimize.DEFAULT`):
- `dynamic_range`: int8 weights, float activations; no data needed.
- `full_integer`: int8 weights and activations of the network's convolutions, pooling and
  padding, calibrated on a representative dataset (the signature's inputs built from
  TFRecords); every other op type (`FLOAT_OPS`) stays float with quantize / dequantize around
  it. The postprocess must: int8 box coordinates and scores would round the outputs. Op types
  are all the converter can tell apart, so the network's residual additions and reshapes stay
  float too. The signature's inputs and outputs keep their types. TFLite applies that op
  denylist to the main subgraph only: the body of the NMS loop (a WHILE op) is quantized to
  int8 anyway, so NMS compares int8 areas of the candidate boxes (the kept boxes' coordinates
  and scores are gathered from float tensors outside the loop). That loop has no division
  (`box_ops.iou_exceeds`): an int8 union can be 0, and TFLite's DIV then fails at run time
  (`div.cc data[i] != 0`), as it did for the demo model before. `export_tflite_model` runs
  every converted model on its calibration data and writes nothing if TFLite cannot run it.
"""

import warnings

import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.python import schema_util

from detection.serving import input_types

FLOAT32 = "float32"
DYNAMIC_RANGE = "dynamic_range"
FULL_INTEGER = "full_integer"
QUANTIZATIONS = (FLOAT32, DYNAMIC_RANGE, FULL_INTEGER)

# Op types full_integer keeps float: everything but the network's convolutions, pooling and
# padding. Additions, reshapes and clips are in the postprocess too (box decoding, IoUs, score
# reshapes), where int8 would round boxes and scores; the network's residual additions stay
# float with them.
FLOAT_OPS = (
    "ABS", "ADD", "ARG_MAX", "CAST", "CONCATENATION", "DIV", "EQUAL", "EXP", "EXPAND_DIMS",
    "FLOOR", "FLOOR_DIV", "FLOOR_MOD", "GATHER", "GATHER_ND", "GREATER", "GREATER_EQUAL",
    "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGICAL_NOT", "LOGICAL_OR", "LOGISTIC",
    "MAXIMUM", "MINIMUM", "MUL", "NOT_EQUAL", "ONE_HOT", "PACK", "RANGE", "REDUCE_ANY",
    "REDUCE_MAX", "REDUCE_MIN", "RELU", "RESHAPE", "SELECT", "SELECT_V2", "SLICE", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "TILE", "TOPK_V2", "TRANSPOSE", "UNPACK", "WHILE",
)  # fmt: skip


def new_interpreter(**kwargs):
    """`tf.lite.Interpreter(**kwargs)` without its deprecation warning on stderr.

    TensorFlow 2.21's interpreter warns on every construction that it moves to
    `ai_edge_litert`; it still works, and the warning would stand before the one line a tool
    prints on bad input.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return tf.lite.Interpreter(**kwargs)


def representative_inputs(file_pattern, spec, preprocess, network_size, num_images):
    """Signature inputs built from the images of TFRecords, one at a time, for calibration.

    Args:
      file_pattern: TFRecord glob(s), comma-separated.
      spec: the InputSpec (tensor input types only; a static batch).
      preprocess: the model kind's preprocessing (raw_image_tensor inputs are preprocessed).
      network_size: (H, W).
      num_images: how many images to read.

    Yields:
      [input array] lists, as `TFLiteConverter.representative_dataset` wants.

    Raises:
      ValueError: no file matches, or a string input type.
    """
    if spec.input_type not in input_types.TENSOR_INPUT_TYPES:
        raise ValueError(f"no representative dataset for --input_type={spec.input_type}")
    files = sorted(f for p in file_pattern.split(",") if p for f in tf.io.gfile.glob(p))
    if not files:
        raise ValueError(f"no TFRecord file matches {file_pattern!r}")
    dataset = tf.data.TFRecordDataset(files).take(num_images)
    batch = []
    for serialized in dataset:
        image = input_types.decode_image(input_types.encoded_image_of_example(serialized))
        if spec.input_type == input_types.RAW_IMAGE_TENSOR:
            image, _ = preprocess(image, network_size)
            image = image[: spec.image_size[0], : spec.image_size[1]]
        elif spec.image_size[0] is not None:
            image = tf.cast(tf.image.resize(image, spec.image_size), tf.uint8)
        batch.append(image)
        if len(batch) == (spec.batch_size or 1):
            yield [tf.stack(batch).numpy()]
            batch = []


def convert(concrete_function, trackable, quantization, representative=None, select_ops=False):
    """Converts a concrete serving function to a TFLite flatbuffer.

    Args:
      concrete_function: the traced serving function (static input shape).
      trackable: the object owning its variables (frozen into constants).
      quantization: one of QUANTIZATIONS.
      representative: for full_integer, a callable returning an iterator of input lists.
      select_ops: allow TensorFlow ops without a TFLite built-in (Flex delegate).

    Returns:
      bytes of the .tflite model.

    Raises:
      ValueError: unknown quantization, or full_integer without representative data.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"--quantization={quantization!r}: expected one of {', '.join(QUANTIZATIONS)}"
        )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function], trackable)
    supported = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if select_ops:
        supported.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = supported
    if quantization != FLOAT32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization != FULL_INTEGER:
        return converter.convert()
    if representative is None:
        raise ValueError("full_integer quantization needs a representative dataset")
    converter.representative_dataset = representative
    # The quantization debugger is TFLite's public way to keep chosen op types float. It
    # builds interpreters, whose deprecation warning `new_interpreter` explains.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=representative,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=FLOAT_OPS),
        )
        return debugger.get_nondebug_quantized_model()


def check_runs(model_content, batches):
    """Runs a converted model on each input batch of `batches`.

    Whether a quantized model runs can depend on the data (a value that rounds to 0), so the
    tool passes every calibration batch, not just one.

    Args:
      model_content: bytes of the .tflite model.
      batches: an iterable of input arrays, each one batch of the model's input.

    Returns:
      the number of batches run.

    Raises:
      RuntimeError: the interpreter fails on a batch (the message is TFLite's).
    """
    interpreter = new_interpreter(model_content=model_content)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()
    ((name, _),) = runner.get_input_details().items()
    count = 0
    for batch in batches:
        runner(**{name: batch})
        count += 1
    return count


def op_names(model_content):
    """The sorted set of op names in a .tflite model, in every subgraph (loop bodies too).

    Built-in ops by their schema name (`CONV_2D`, `WHILE`), custom ones by their custom code
    (`FlexDecodeImage` for select TF ops). The interpreter's op list covers the main subgraph
    only, so the flatbuffer is read with TFLite's own schema module.
    """
    model = schema_fb.Model.GetRootAs(model_content, 0)
    builtin_names = {
        code: name for name, code in vars(schema_fb.BuiltinOperator).items() if name.isupper()
    }
    names = set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            opcode = model.OperatorCodes(subgraph.Operators(o).OpcodeIndex())
            code = schema_util.get_builtin_code_from_operator_code(opcode)
            if code == schema_fb.BuiltinOperator.CUSTOM:
                names.add(opcode.CustomCode().decode())
            else:
                names.add(builtin_names[code])
    return sorted(names)
