"""Checks that the params describe something that can be built, before anything is built.

Type checks (`ParamsDict`) and restrictions (`a <= b`) cannot say that a size must be a
positive integer or that the input must divide by the coarsest feature stride. Without these
checks such values fail deep inside model construction or the input pipeline, with a
TensorFlow traceback instead of the key. Every tool loads params through
`loader.load_params`, which runs `check` after the restrictions.
"""

from detection.hyperparameters import ParamsDict, ParamsError

# Keys that must hold integers >= the given minimum (null is accepted where the default is
# null: "unset"). Only keys present in a model's tree are checked.
_INTEGER_KEYS = {
    # Every backbone's finest output is C2 (stride 4).
    "architecture.min_level": 2,
    "architecture.max_level": 1,
    "architecture.num_classes": 2,
    "train.total_steps": 1,
    "train.iterations_per_loop": 1,
    "train.train_batch_size": 1,
    "train.checkpoint_interval": 1,
    "train.checkpoint_max_to_keep": 1,
    "train.learning_rate.warmup_steps": 0,
    "eval.eval_batch_size": 1,
    "eval.eval_samples": 1,
    "eval.num_steps_per_eval": 1,
    "predict.predict_batch_size": 1,
    "anchor.num_scales": 1,
    "fpn.fpn_feat_dims": 1,
    "resnet.resnet_depth": 1,
    "retinanet_head.num_convs": 0,
    "retinanet_head.num_filters": 1,
    "postprocess.max_total_size": 1,
    "postprocess.pre_nms_num_boxes": 1,
}
_PARSER_INTEGER_KEYS = {"max_num_instances": 1}
_INT64_LIMIT = 2**63
# Detectors add and upsample feature maps across levels and place anchors at stride
# 2**level, so their input must divide by the coarsest stride. Classification pools
# globally and takes any size (ImageNet's 224 with max_level 7).
_STRIDE_CHECKED_PARSERS = ("retinanet_parser", "maskrcnn_parser", "shapemask_parser")
_POSITIVE_NUMBER_KEYS = ("anchor.anchor_size",)


def _lookup(params, dotted):
    node = params
    for part in dotted.split("."):
        if not isinstance(node, ParamsDict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_integer(key, value, minimum):
    if value is None:
        return
    if not _is_integer(value) or value < minimum:
        raise ParamsError(f"{key}={value!r}: must be an integer >= {minimum}")
    if value >= _INT64_LIMIT:  # TensorFlow's int64 steps and sizes.
        raise ParamsError(f"{key}={value!r}: must be an integer >= {minimum} and < 2**63")


def _check_output_size(params):
    parser = params.architecture.get("parser")
    if not isinstance(parser, str) or parser not in params:
        return  # An unknown parser is reported by the dataloader factory, with the choices.
    section = params[parser]
    key = f"{parser}.output_size"
    for name, minimum in _PARSER_INTEGER_KEYS.items():
        if name in section:
            _check_integer(f"{parser}.{name}", section[name], minimum)
    if "output_size" not in section:
        return
    size = section["output_size"]
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(_is_integer(v) and v > 0 for v in size)
    ):
        raise ParamsError(f"{key}={size!r}: must be [height, width], two positive integers")
    if parser not in _STRIDE_CHECKED_PARSERS:
        return
    stride = 2**params.architecture.max_level
    if any(v % stride for v in size):
        fixed = [-(-v // stride) * stride for v in size]
        raise ParamsError(
            f"{key}={size!r} is not divisible by 2**architecture.max_level = {stride} (the "
            f"coarsest feature stride); use e.g. {fixed}"
        )


def _check_not_null(params, defaults):
    """Numbers and booleans of the defaults stay non-null (null means "unset", not zero)."""
    for key, default in defaults.flat_items():
        if isinstance(default, (bool, int, float)):
            found, value = _lookup(params, key)
            if found and value is None:
                raise ParamsError(f"{key} cannot be null (its default is {default!r})")


def check(params, defaults=None):
    """Raises ParamsError naming the key if `params` cannot be built.

    Checks: numbers and booleans of `defaults` (the model's default ParamsDict) are not set
    to null; integer sizes, counts and levels are integers in range; `anchor.anchor_size` and
    `anchor.aspect_ratios` are positive; the parser's `output_size` is two positive
    integers, divisible by `2**architecture.max_level` for detectors.
    """
    if defaults is not None:
        _check_not_null(params, defaults)
    for key, minimum in _INTEGER_KEYS.items():
        found, value = _lookup(params, key)
        if found:
            _check_integer(key, value, minimum)
    for key in _POSITIVE_NUMBER_KEYS:
        found, value = _lookup(params, key)
        if found and value is not None and not value > 0:
            raise ParamsError(f"{key}={value!r}: must be > 0")
    found, ratios = _lookup(params, "anchor.aspect_ratios")
    if found and (not ratios or not all(r > 0 for r in ratios)):
        raise ParamsError(
            f"anchor.aspect_ratios={ratios!r}: must be a non-empty list of numbers > 0"
        )
    _check_output_size(params)
