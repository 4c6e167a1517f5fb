"""Bad files and records name themselves: file, record index, source_id and problem
(issue 15, item 2). The command-line side is in tests/cli/test_bad_inputs.py."""

import io
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from detection.dataloader import record_diagnosis, record_errors
from detection.dataloader.input_reader import InputReader
from detection.dataloader.tf_example_decoder import TfExampleDecoder


def _jpeg(seed=0, size=16):
    array = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


def _feature(values):
    if isinstance(values[0], bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if isinstance(values[0], float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _example(source_id=7, drop=(), **overrides):
    values = {
        "image/encoded": [_jpeg(source_id)],
        "image/source_id": [str(source_id).encode()],
        "image/object/bbox/ymin": [0.1, 0.5],
        "image/object/bbox/xmin": [0.1, 0.2],
        "image/object/bbox/ymax": [0.4, 0.9],
        "image/object/bbox/xmax": [0.6, 0.8],
        "image/object/class/label": [1, 2],
    }
    values.update({k.replace("__", "/"): v for k, v in overrides.items()})
    feature = {k: _feature(v) for k, v in values.items() if k not in drop and v}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _parser(record):
    decoded = TfExampleDecoder().decode(record)
    image = tf.image.resize(tf.cast(decoded["image"], tf.float32), [8, 8])
    return {"images": image, "source_ids": decoded["source_id"]}, {
        "classes": tf.reduce_sum(decoded["groundtruth_classes"])
    }


def _pipeline_error(pattern, is_training=True):
    dataset = InputReader(pattern, _parser, is_training=is_training, batch_size=2)()
    with pytest.raises(tf.errors.OpError) as info:
        for _ in dataset.take(4):
            pass
    return info.value


@pytest.mark.parametrize(
    "bad, problem",
    [
        (_example(source_id=9, **{"image__encoded": [b"not an image"]}), "image/encoded is not a"),
        (b"hello, I am not a tf.Example", "the record is not a tf.Example"),
        (_example(source_id=9, **{"image__object__class__label": [1, 2, 3]}), "3 class labels"),
    ],
)
def test_a_failing_record_is_named_with_its_problem(tmp_path, bad, problem):
    path = _write(tmp_path / "data.tfrecord", [_example(1), _example(2), bad, _example(3)])
    error = _pipeline_error(path, is_training=False)
    message = record_errors.data_error_message(error)
    assert message.startswith(f"{path}: record 2"), message
    assert problem in message
    if b"not a tf.Example" not in bad:
        assert "(source_id 9)" in message


def test_the_parsers_own_error_still_comes_out_of_the_pipeline(tmp_path):
    """The parser's message reaches tf.errors as without the reader's checks; the one-line
    version adds where the record is."""
    bad = _example(source_id=9, **{"image__object__class__label": [1, 5]})

    def parser(record):
        features, labels = _parser(record)
        check = tf.debugging.Assert(labels["classes"] < 5, ["class id out of range"])
        with tf.control_dependencies([check]):
            return features, tf.nest.map_structure(tf.identity, labels)

    path = _write(tmp_path / "data.tfrecord", [_example(1), bad])
    dataset = InputReader(path, parser, is_training=True, batch_size=2)()
    with pytest.raises(tf.errors.InvalidArgumentError, match="class id out of range") as info:
        next(iter(dataset))
    message = record_errors.data_error_message(info.value, num_classes=4)
    assert message == f"{path}: record 1 (source_id 9): class id 5 >= architecture.num_classes=4"


def test_a_corrupt_file_is_named(tmp_path):
    path = _write(tmp_path / "data.tfrecord", [_example(i) for i in range(4)])
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    message = record_errors.data_error_message(_pipeline_error(path))
    assert message.startswith(f"corrupt or truncated TFRecord file {path}: ")
    assert message.endswith(f"of its {len(data)} bytes are readable records")


@pytest.mark.parametrize("kind", ["empty", "directory"])
def test_empty_files_and_directories_fail_when_the_dataset_is_built(tmp_path, kind):
    path = tmp_path / "data.tfrecord"
    if kind == "empty":
        path.write_bytes(b"")
        expected = f"TFRecord file {path} is empty (0 bytes)"
    else:
        path.mkdir()
        expected = f"{path} is a directory, not a TFRecord file"
    _write(tmp_path / "good.tfrecord", [_example(1)])
    with pytest.raises(ValueError, match=re.escape(expected)):
        InputReader(str(tmp_path / "*.tfrecord"), _parser, is_training=True, batch_size=2)()


def test_good_records_are_unchanged_by_the_checks(tmp_path):
    path = _write(tmp_path / "data.tfrecord", [_example(i) for i in range(1, 6)])
    dataset = InputReader(path, _parser, is_training=False, batch_size=2, deterministic=True)()
    ids = [i for f, _ in dataset for i in f["source_ids"].numpy().tolist()]
    assert ids == [1, 2, 3, 4, 5, -1]


def _numbers(records, finite):
    """parse_records over in-memory records with a parser that fails on non-numbers."""
    dataset = tf.data.Dataset.from_tensor_slices(
        (["f"] * len(records), tf.range(len(records), dtype=tf.int64), records)
    )
    return record_errors.parse_records(
        dataset, lambda r: {"n": tf.strings.to_number(r, tf.int32)}, finite
    )


def test_parse_records_keeps_order_and_values():
    records = [str(i) for i in range(40)]
    for finite in (True, False):
        values = [int(e["n"]) for e in _numbers(records, finite)]
        assert values == list(range(40))


@pytest.mark.parametrize(
    "records, bad_index, finite",
    [
        (["1", "x", "2", "3"], 1, True),
        (["1", "x", "y", "3"], 2, False),  # Consecutive failures: the last one is named.
        (["x", "1"], 0, True),
        (["1", "2", "x"], 2, True),  # The last record of a finite dataset.
    ],
)
def test_parse_records_names_a_failing_record(records, bad_index, finite):
    with pytest.raises(tf.errors.InvalidArgumentError, match="StringToNumberOp"):
        for _ in _numbers(records, finite):
            pass
    with open(record_errors.location_file()) as f:
        assert f.read() == f"f\n{bad_index}"


def test_parse_records_raises_a_corrupt_file_marker():
    records = ["1", "bad input data: corrupt or truncated TFRecord file f: 3 of its 9 bytes"]
    dataset = tf.data.Dataset.from_tensor_slices(
        (["f", "f"], tf.constant([0, record_errors.CORRUPT_FILE_INDEX], tf.int64), records)
    )
    parsed = record_errors.parse_records(dataset, lambda r: tf.strings.length(r), finite=False)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(parsed)
    assert record_errors.data_error_message(info.value) == records[1][len("bad input data: ") :]


@pytest.mark.parametrize(
    "record, problem",
    [
        (b"\xff\xd8\xff\xe0 a JPEG file, not an Example", "the record is not a tf.Example"),
        (b"", "the record has no image/encoded"),
        (_example(drop=("image/encoded",)), "the record has no image/encoded"),
        (_example(**{"image__encoded": [b""]}), "image/encoded is empty"),
        (_example(**{"image__encoded": [_jpeg()[:300]]}), "image/encoded is not a decodable"),
        (_example(**{"image__encoded": [5]}), "image/encoded is a int64_list, not a bytes_list"),
        (_example(**{"image__object__class__label": [1.0, 2.0]}), "is a float_list"),
        (_example(**{"image__object__bbox__xmin": [0.1]}), "differ in length (ymin, xmin"),
        (_example(**{"image__object__class__label": [1]}), "1 class labels but 2 boxes"),
        (_example(**{"image__object__bbox__ymin": [float("nan"), 0.1]}), "NaN or infinite"),
        (_example(**{"image__source_id": [b"abc"]}), "image/source_id 'abc' is not an integer"),
        (_example(**{"image__object__class__label": [1, -2]}), "class id -2 is negative"),
        (_example(**{"image__object__class__label": [1, 4]}), "class id 4 >= architecture"),
        (_example(**{"image__object__mask": [b"png?", b"no"]}), "mask 0 is not a decodable PNG"),
        (_example(drop=("image/source_id",)), "image/source_id is missing or empty"),
        (_example(), None),
    ],
)
def test_describe_record(record, problem):
    _, found = record_diagnosis.describe_record(record, num_classes=4)
    assert found == problem if problem is None else problem in found, found
