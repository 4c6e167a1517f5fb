"""Naming the bad record inside tf.data, and turning pipeline errors into one line.

A TensorFlow op that fails inside a dataset function (parsing, image decoding, a check) fails
the whole pipeline with its own message, which names neither the file nor the record (and for
a payload that is not a tf.Example, carries raw bytes that are not even text). `parse_records`
therefore maps the parser with `ignore_errors` and finds the records it dropped:

  * each record is numbered and paired with the record before it (a `scan`);
  * the parser runs in parallel, in order (`deterministic=True`), and a record it fails on
    is dropped (`ignore_errors`), so the pipeline does not stop there;
  * a second `scan` checks the numbers: after a gap, the record just before the survivor
    was dropped (the last of a run of failing records). Its file name and index are written to `location_file()` and the parser
    runs on it again, outside `ignore_errors`, so that the pipeline fails with the parser's
    own error, as it would without this module (an assertion naming the record if that run
    succeeds). A finite pipeline ends with a marker that bypasses the parser, so that a
    failure of its last record is found too.

`data_error_message` reads the note back and works out, in Python, what is wrong with the
record (`record_diagnosis`). Good records pay for two small scans: no nested datasets, no
second parse (bench/input_pipeline.py). The note is a local file: when the input pipeline runs
on another machine than the Python process (a remote TPU host), the one line has the parser's
message without the location.

`data_error_message` turns any error of an input pipeline that is about the data into one
line: a failed record (file, index, source_id, problem), the reader's assertions
(`DATA_ERROR_PREFIX`: corrupt files), files that vanish or cannot be read.
"""

import os
import re
import tempfile
import time

import tensorflow as tf

from detection.dataloader import record_diagnosis

DATA_ERROR_PREFIX = "bad input data: "
_RECORD_FAILED = " : parser failed on record "
_RECORD_LOCATION = re.compile(re.escape(_RECORD_FAILED) + r"(\d+)$")


# Indices of the markers that travel with the records (real records count from 0).
_END_INDEX = -1
CORRUPT_FILE_INDEX = -2


def location_file():
    """Where this process's input pipelines note the file and index of a failed record."""
    return os.path.join(tempfile.gettempdir(), f"detection-failed-record-{os.getpid()}.txt")


def _zeros(spec):
    shape = [0 if d is None else d for d in spec.shape.as_list()]
    return tf.zeros(shape, spec.dtype)


def _raise_parser_error(parser_fn, filename, index, record, note_path):
    """Notes where `record` comes from, then fails with the parser's error on it."""
    location = tf.strings.join([filename, "\n", tf.strings.as_string(index)])

    # The first failure's note stands: after an error, a prefetching consumer may run the
    # check again on later elements (with its state not advanced) and see a false gap.
    def write_note():
        with tf.control_dependencies([tf.io.write_file(note_path, location)]):
            return tf.strings.substr(location, 0, 0)

    # The path goes through a runtime value: with a constant path, graph optimization would
    # fold the file check into a constant, computed before any note existed.
    runtime_path = tf.strings.join([note_path, tf.strings.substr(location, 0, 0)])
    no_note_yet = tf.equal(tf.size(tf.io.matching_files(runtime_path)), 0)
    # A data dependency, not only a control one: the note must be written before the parser
    # fails (a failing function cancels its pending ops).
    empty = tf.cond(no_note_yet, write_note, lambda: tf.constant(""))
    outputs = parser_fn(tf.strings.join([record, empty]))
    message = tf.strings.join(
        [DATA_ERROR_PREFIX, filename, _RECORD_FAILED, tf.strings.as_string(index)]
    )
    # Fires only if the parser succeeds this time: fail naming the record anyway. The outputs
    # are data of the assertion, not control inputs: only data makes it wait for them (and
    # so let the parser's own error come first).
    return tf.debugging.Assert(False, [message] + tf.nest.flatten(outputs), summarize=1)


def parse_records(dataset, parser_fn, finite, paired_dataset=None):
    """Maps `parser_fn` over `(filename, index, record)` elements; failures name the record.

    Args:
      dataset: of ([] string file name, [] int64 index in the file, [] string record), as
        `tfrecord_files.read_tfrecord_file_checked` reads them (with its corrupt-file markers).
      parser_fn: record -> statically shaped outputs (a tensor, tuple or dict); with
        `paired_dataset`, (record, paired element) -> outputs.
      finite: the dataset ends (evaluation): its last record is checked too.
      paired_dataset: None, or an endless dataset whose elements are handed to the parser
        beside the records, one each (copy-paste's objects to paste).

    Returns:
      The dataset of `parser_fn` outputs, in input order. Iterating it past a record the
      parser fails on raises the parser's error, after noting the record's location; past a
      corrupt file's marker, an assertion naming the file.
    """
    note_path = location_file()
    if os.path.exists(note_path):
        os.remove(note_path)  # A note of an earlier pipeline of this process.
    if finite:
        end = (tf.constant(""), tf.constant(_END_INDEX, tf.int64), tf.constant(""))
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(end))

    # Without a paired stream a constant stands in for it, so one code path serves both.
    if paired_dataset is None:
        extras = tf.data.Dataset.from_tensors(tf.constant(0)).repeat()

        def parse_one(record, unused_extra):
            return parser_fn(record)

    else:
        extras = paired_dataset
        parse_one = parser_fn
    # Markers bypass the parser with zeros of its output structure.
    spec = tf.data.Dataset.zip((dataset, extras)).map(lambda e, x: parse_one(e[2], x)).element_spec

    def pair_with_previous(state, current):
        number, previous = state
        return (number + 1, current), (number, previous, current)

    nothing = (tf.constant(""), tf.constant(_END_INDEX, tf.int64), tf.constant(""))
    dataset = dataset.scan((tf.constant(0, tf.int64), nothing), pair_with_previous)
    dataset = tf.data.Dataset.zip((dataset, extras))

    def parse(element, extra):
        number, previous, current = element
        outputs = tf.cond(
            tf.less(current[1], 0),
            lambda: tf.nest.map_structure(_zeros, spec),
            lambda: parse_one(current[2], extra),
        )
        # The failed record is parsed again with this element's paired element.
        return number, previous, current, outputs, extra

    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.ignore_errors()

    def check(expected, element):
        number, previous, current, outputs, extra = element

        def dropped():
            failing = _raise_parser_error(
                lambda record: parse_one(record, extra), *previous, note_path
            )
            with tf.control_dependencies([failing]):
                return tf.constant(False)

        def corrupt_file():
            # current[2] holds the message naming the file.
            with tf.control_dependencies([tf.debugging.Assert(False, [current[2]])]):
                return tf.constant(False)

        # A marker is never dropped: after its error, a prefetching consumer may call this
        # again with the state not advanced, which must not blame the marker.
        in_sequence = tf.logical_or(tf.equal(number, expected), tf.less(previous[1], 0))
        checked = tf.cond(
            in_sequence,
            lambda: tf.cond(
                tf.equal(current[1], CORRUPT_FILE_INDEX), corrupt_file, lambda: tf.constant(True)
            ),
            dropped,
        )
        with tf.control_dependencies([checked]):
            outputs = tf.nest.map_structure(tf.identity, outputs)
        return number + 1, (tf.equal(current[1], _END_INDEX), outputs)

    dataset = dataset.scan(tf.constant(0, tf.int64), check)
    if finite:
        dataset = dataset.filter(lambda is_end, outputs: tf.logical_not(is_end))
    return dataset.map(lambda is_end, outputs: outputs)


def _noted_location():
    """(file, index) noted by a failed record, or None. Consumes the note."""
    path = location_file()
    # Other failing records of a parallel map may still be rewriting the note: retry a torn
    # read for a moment.
    for _ in range(20):
        try:
            with open(path, encoding="utf-8") as f:
                filename, index = f.read().rsplit("\n", 1)
            os.remove(path)
            return filename, int(index)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            time.sleep(0.05)
    return None


def _assertion_text(line):
    """`assertion failed: [a] [b c]` -> `a b c`; other lines unchanged."""
    if not line.startswith("assertion failed:"):
        return line
    items = _ASSERT_ITEM.findall(line[len("assertion failed:") :])
    return " ".join(item.strip() for item in items) or line


_ASSERT_ITEM = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]")
_FUNCTION_NODE = re.compile(r"^(\{\{function_node [^}]*\}\}\s*)+")
# Lines TensorFlow wraps an op's error in, when it comes out of a tf.function.
_WRAPPER_LINE = re.compile(
    r"^(Graph execution error:|Detected at node|<stack traces unavailable>|File \"|\[\[)"
)


def _error_line(text):
    """The line of a TensorFlow error message that says what went wrong."""
    lines = [_FUNCTION_NODE.sub("", line.strip()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if line.startswith("assertion failed:"):
            return line
    # A stack trace ("Detected at node ... defined at") precedes the message when available.
    informative = [line for line in lines if not _WRAPPER_LINE.match(line)]
    if any(line.startswith('File "') for line in lines):
        last = max(i for i, line in enumerate(lines) if line.startswith('File "'))
        informative = [line for line in lines[last + 1 :] if not _WRAPPER_LINE.match(line)]
    return informative[0] if informative else (lines[0] if lines else "")


def data_error_message(error, num_classes=None):
    """One line for an error raised by iterating an input pipeline, or None if not data's.

    Args:
      error: a tf.errors.OpError.
      num_classes: `architecture.num_classes`, to explain a record with a class id out of
        range.

    Returns:
      The line (naming the file, record index, source_id and problem where known), or None
      for an error that is not about the input data (a bug: let it propagate).
    """
    first = _error_line(getattr(error, "message", None) or str(error))
    noted = _noted_location()
    if noted is not None and not first.startswith(f"assertion failed: [{DATA_ERROR_PREFIX}"):
        # The parser's own error on a record the pipeline located.
        return record_diagnosis.describe_record_at(*noted, num_classes, _assertion_text(first))
    rest = first[len("assertion failed:") :].strip()
    if rest.startswith("[" + DATA_ERROR_PREFIX):
        # The message is the first item; more may follow (the parser's outputs).
        message = _ASSERT_ITEM.match(rest)
        message = (message.group(1) if message else rest[1:])[len(DATA_ERROR_PREFIX) :]
        location = _RECORD_LOCATION.search(message)
        if location is None:
            return message
        path, index = message[: location.start()], int(location.group(1))
        return record_diagnosis.describe_record_at(path, index, num_classes)
    if isinstance(
        error, (tf.errors.NotFoundError, tf.errors.DataLossError, tf.errors.PermissionDeniedError)
    ):
        return re.sub(r"\s*\[Op:[^\]]*\].*$", "", first)
    return None
