"""Naming the bad record inside tf.data, and turning pipeline errors into one line.

A TensorFlow op that fails inside a dataset function (parsing, image decoding, a check) fails
the whole pipeline with its own message, which names neither the file nor the record (and for
a payload that is not a tf.Example, carries raw bytes that are not even text). The reader
therefore runs each record's parser through `try_call`, a nested one-element dataset whose
`ignore_errors` turns a failure into a flag (`checked_parser`). For a record that fails, the
file name and index are written to `location_file()` and the parser is run again, outside
`try_call`, so that the pipeline fails with the parser's own error, as it would without this
module. `data_error_message` then reads the location back and, in Python, works out what is
wrong with the record (`record_diagnosis`). Good records pay only for the nested dataset:
tens of microseconds, under 1% of a record's decode and resize (bench/input_pipeline.py).

The note is a local file: when the input pipeline runs on another machine than the Python
process (a remote TPU host), the one line has the parser's message without the location.

`data_error_message` turns any error of an input pipeline that is about the data into one
line: a failed record (file, index, source_id, problem), the reader's assertions
(`DATA_ERROR_PREFIX`: corrupt files), other assertions, files that vanish or cannot be read.
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
_PROBE_KEY = "detection/probe"  # Parsing any key checks that a record is a tf.Example.


def location_file():
    """Where this process's input pipelines note the file and index of a failed record."""
    return os.path.join(tempfile.gettempdir(), f"detection-failed-record-{os.getpid()}.txt")


def _zeros(spec):
    shape = [0 if d is None else d for d in spec.shape.as_list()]
    return tf.zeros(shape, spec.dtype)


def try_call(fn, *args):
    """Runs `fn(*args)` inside a dataset function without letting an op error escape.

    Returns:
      (ok, outputs): ok is a [] bool tensor; outputs has `fn`'s output structure, zeros when
      `fn` failed (an unknown dimension is 0 there).
    """
    attempt = tf.data.Dataset.from_tensors(args).map(lambda *a: fn(*a)).ignore_errors()
    fallback = tf.data.Dataset.from_tensors(
        (False, tf.nest.map_structure(_zeros, attempt.element_spec))
    )
    flagged = attempt.map(lambda *out: (True, out[0] if len(out) == 1 else out))
    return flagged.concatenate(fallback).take(1).get_single_element()


def _probe_example(record):
    return tf.io.parse_single_example(record, {_PROBE_KEY: tf.io.VarLenFeature(tf.string)})[
        _PROBE_KEY
    ].values


def checked_parser(parser_fn):
    """`parser_fn(record)` as `fn(filename, index, record)` whose failures can be located.

    A record the parser fails on is noted in `location_file()` ("<file>\\n<index>"), then
    the parser runs on it again and raises its own error. Should that second run succeed, or
    the record not be a tf.Example, the pipeline fails with an assertion naming the record.
    """
    path = location_file()
    if os.path.exists(path):
        os.remove(path)  # A note of an earlier pipeline of this process.

    def parse(filename, index, record):
        ok, outputs = try_call(parser_fn, record)

        def fail():
            location = tf.strings.join([filename, "\n", tf.strings.as_string(index)])
            message = tf.strings.join(
                [DATA_ERROR_PREFIX, filename, _RECORD_FAILED, tf.strings.as_string(index)]
            )
            with tf.control_dependencies([tf.io.write_file(path, location)]):
                record_again = tf.identity(record)

            def parser_error():
                again = parser_fn(record_again)
                with tf.control_dependencies(tf.nest.flatten(again)):
                    return tf.identity(message)

            # TensorFlow's error for a payload that is not a tf.Example quotes its bytes,
            # which are not text: raise ours instead.
            is_example, _ = try_call(_probe_example, record_again)
            failed = tf.cond(is_example, parser_error, lambda: tf.identity(message))
            with tf.control_dependencies([tf.debugging.Assert(False, [failed])]):
                return tf.constant(False)

        checked = tf.cond(ok, lambda: tf.constant(True), fail)
        with tf.control_dependencies([checked]):
            return tf.nest.map_structure(tf.identity, outputs)

    return parse


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
    if rest.startswith("[" + DATA_ERROR_PREFIX) and rest.endswith("]"):
        message = rest[1 + len(DATA_ERROR_PREFIX) : -1]  # Brackets inside are fine.
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
