"""What is wrong with one record of a TFRecord file, worked out in Python after a failure.

The input pipeline only says which record its parser failed on (`record_errors`); this module
reads that record again and checks it the way the decoders read it (tf_example_decoder.py,
the TF Object Detection API keys), returning one line:
`<file>: record <index> (source_id <id>): <problem>`.

Checks, in order: a tf.Example at all; each standard key holding the right kind of list;
a numeric `image/source_id`; `image/encoded` present, non-empty and decodable; the four box
coordinate lists of equal length, as many class labels as boxes, finite coordinates; class
ids in [0, num_classes); decodable instance masks; a source_id at all.
"""

import math
import re

import tensorflow as tf

# The standard keys and the kind of list each must hold.
_KEY_KINDS = {
    "image/encoded": "bytes_list",
    "image/source_id": "bytes_list",
    "image/height": "int64_list",
    "image/width": "int64_list",
    "image/object/bbox/ymin": "float_list",
    "image/object/bbox/xmin": "float_list",
    "image/object/bbox/ymax": "float_list",
    "image/object/bbox/xmax": "float_list",
    "image/object/class/label": "int64_list",
    "image/object/area": "float_list",
    "image/object/is_crowd": "int64_list",
    "image/object/mask": "bytes_list",
    "image/class/label": "int64_list",
}
_BOX_KEYS = tuple(f"image/object/bbox/{k}" for k in ("ymin", "xmin", "ymax", "xmax"))


def _tf_error(error):
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(error).__name__
    line = re.sub(r"\s*\[Op:[^\]]*\].*$", "", line.split("}} ", 1)[-1])
    return line[:200]


def _values(feature, key):
    if key not in feature:
        return []
    kind = feature[key].WhichOneof("kind")
    return list(getattr(feature[key], kind).value) if kind else []


def _image_problem(encoded):
    if len(encoded) != 1:
        return (
            "the record has no image/encoded" if not encoded else "image/encoded has several values"
        )
    if not encoded[0]:
        return "image/encoded is empty"
    try:
        tf.io.decode_image(encoded[0], channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError) as error:
        return f"image/encoded is not a decodable image ({_tf_error(error)})"
    return None


def _box_problem(feature):
    counts = [len(_values(feature, k)) for k in _BOX_KEYS]
    if len(set(counts)) > 1:
        return (
            "the box coordinate lists differ in length (ymin, xmin, ymax, xmax: "
            + ", ".join(map(str, counts))
            + ")"
        )
    labels = _values(feature, "image/object/class/label")
    if len(labels) != counts[0]:
        return f"the record has {len(labels)} class labels but {counts[0]} boxes"
    if not all(math.isfinite(v) for k in _BOX_KEYS for v in _values(feature, k)):
        return "a box coordinate is NaN or infinite"
    return None


def _class_problem(feature, num_classes):
    labels = _values(feature, "image/object/class/label") + _values(feature, "image/class/label")
    for label in labels:
        if label < 0:
            return f"class id {label} is negative"
        if num_classes is not None and label >= num_classes:
            return f"class id {label} >= architecture.num_classes={num_classes}"
    return None


def _mask_problem(feature):
    for i, png in enumerate(_values(feature, "image/object/mask")):
        try:
            tf.io.decode_png(png, channels=1)
        except (tf.errors.OpError, ValueError) as error:
            return f"image/object/mask {i} is not a decodable PNG ({_tf_error(error)})"
    return None


def describe_record(serialized, num_classes=None):
    """(source_id or None, what is wrong with the serialized record or None)."""
    try:
        example = tf.train.Example.FromString(serialized)
        # TensorFlow's parser has the last word: protobuf's accepts unknown fields it rejects.
        tf.io.parse_single_example(serialized, {"detection/probe": tf.io.VarLenFeature(tf.string)})
    except Exception:  # DecodeError, InvalidArgumentError, or UnicodeDecodeError of its text.
        return None, "the record is not a tf.Example"
    feature = example.features.feature
    source_ids = _values(feature, "image/source_id") if "image/source_id" in feature else []
    source_id = source_ids[0].decode("utf-8", "replace") if source_ids else None
    for key, kind in _KEY_KINDS.items():
        actual = feature[key].WhichOneof("kind") if key in feature else None
        if actual not in (None, kind):
            return source_id, f"feature {key} is a {actual}, not a {kind}"
    if source_id is not None and source_id and not source_id.strip().lstrip("-").isdigit():
        return source_id, f"image/source_id {source_id!r} is not an integer"
    for problem in (
        _image_problem(_values(feature, "image/encoded")),
        _box_problem(feature),
        _class_problem(feature, num_classes),
        _mask_problem(feature),
    ):
        if problem:
            return source_id, problem
    if not source_id:
        # Last: with regenerate_source_id the parser does not need one.
        return source_id, (
            "image/source_id is missing or empty (set the parser's regenerate_source_id: true "
            "to use a hash of the image instead)"
        )
    return source_id, None


def read_record(path, index):
    """The serialized record `index` (0-based) of a TFRecord file."""
    for record in tf.data.TFRecordDataset(path).skip(index).take(1):
        return record.numpy()
    raise ValueError(f"{path} has no record {index}")


def describe_record_at(path, index, num_classes=None, parser_error=None):
    """One line saying what is wrong with record `index` of the TFRecord file `path`.

    Args:
      path: the TFRecord file.
      index: 0-based index of the record in the file.
      num_classes: `architecture.num_classes`, to check class ids.
      parser_error: the parser's own message, said when no check finds the problem.
    """
    where = f"{path}: record {index}"
    fallback = parser_error or "the parser failed on it"
    try:
        source_id, problem = describe_record(read_record(path, index), num_classes)
    except (tf.errors.OpError, ValueError) as error:
        return f"{where}: {fallback} (the record cannot be read again: {_tf_error(error)})"
    if source_id:
        where += f" (source_id {source_id})"
    return f"{where}: {problem or fallback}"
