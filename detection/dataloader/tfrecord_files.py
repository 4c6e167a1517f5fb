"""TFRecord files of an input pipeline: matching patterns, checking files, reading records.

Every file problem is named: a pattern that matches nothing, a directory, an empty (0-byte)
or unreadable file fail when the dataset is built. TensorFlow's DataLossError does not say
which file is corrupt, so each file is read with errors caught, the bytes consumed are counted
(record length + 16 bytes of framing per record), and reaching the end of a file with fewer
bytes than its size adds a marker that `record_errors.parse_records` raises as an error naming
the file. Records come out with their file name and index, so later errors can name them too.
"""

import concurrent.futures

import tensorflow as tf

from detection.dataloader import record_errors

# A TFRecord is: uint64 length, uint32 crc(length), data[length], uint32 crc(data).
_TFRECORD_FRAMING_BYTES = 16
_CHECK_CHUNK_RECORDS = 16


def match_files(file_pattern):
    """Expands file patterns into a sorted, de-duplicated file list.

    Args:
      file_pattern: a glob pattern, several separated by commas, or a list of them.

    Returns:
      A list of file paths: each pattern's matches sorted, patterns in the given order.

    Raises:
      ValueError: a pattern matches no file (the message names it), or no pattern is given.
    """
    patterns = file_pattern if isinstance(file_pattern, (list, tuple)) else [file_pattern]
    patterns = [p.strip() for item in patterns for p in str(item).split(",") if p.strip()]
    if not patterns:
        raise ValueError("Empty file pattern: %r" % (file_pattern,))
    files = []
    seen = set()
    for pattern in patterns:
        matches = sorted(tf.io.gfile.glob(pattern))
        if not matches:
            raise ValueError("File pattern %r matches no files" % pattern)
        for path in matches:
            if path not in seen:
                seen.add(path)
                files.append(path)
    return files


def _stat(path):
    try:
        stat = tf.io.gfile.stat(path)
    except tf.errors.OpError as error:
        raise ValueError(f"cannot read TFRecord file {path}: {error.message}") from None
    if stat.is_directory:
        raise ValueError(
            f"{path} is a directory, not a TFRecord file (use a pattern like {path}/*)"
        )
    if stat.length == 0:
        raise ValueError(f"TFRecord file {path} is empty (0 bytes)")
    return stat.length


def checked_file_sizes(files):
    """Sizes in bytes of TFRecord files.

    Raises:
      ValueError: a path is a directory, an empty file or unreadable (the message names it).
    """
    # Stat in parallel: sequential stats of hundreds of files on GCS take tens of seconds.
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(_stat, files))


def read_tfrecord_file_checked(filename, file_size):
    """Dataset of the records of one TFRecord file, ending with a marker if it is corrupt.

    Args:
      filename: [] string tensor.
      file_size: [] integer tensor, the file's size in bytes.

    Returns:
      A dataset of `(filename, index, record)`: [] string, [] int64 (0-based position in the
      file), [] string. When the readable records do not add up to the file's size (a corrupt
      or truncated file), they are followed by one element with index `CORRUPT_FILE_INDEX`
      whose record is the error message naming the file; `record_errors.parse_records` raises
      it. (An assertion here would be swallowed by the `ignore_errors` downstream.)
    """
    file_size = tf.cast(file_size, tf.int64)
    # Bytes are counted per chunk of records: one function call per chunk instead of per
    # record keeps the check's cost small next to the raw read (measured ~4x cheaper).
    chunks = tf.data.TFRecordDataset(filename).ignore_errors().batch(_CHECK_CHUNK_RECORDS)
    flagged = tf.data.Dataset.zip((chunks, tf.data.Dataset.from_tensors(False).repeat()))
    end_marker = tf.data.Dataset.from_tensors((tf.zeros([0], tf.string), True))

    def count_bytes(state, element):
        total, count = state
        chunk, is_end = element
        total += tf.reduce_sum(
            tf.cast(tf.strings.length(chunk), tf.int64) + _TFRECORD_FRAMING_BYTES
        )
        size = tf.size(chunk, out_type=tf.int64)
        # 1 at the end of a file whose records miss some of its bytes, else 0.
        corrupt = tf.cast(tf.logical_and(is_end, tf.not_equal(total, file_size)), tf.int64)
        message = tf.strings.join(
            [
                record_errors.DATA_ERROR_PREFIX,
                "corrupt or truncated TFRecord file ",
                filename,
                ": ",
                tf.strings.as_string(total),
                " of its ",
                tf.strings.as_string(file_size),
                " bytes are readable records",
            ]
        )
        element = (
            tf.fill([size + corrupt], filename),
            tf.concat(
                [
                    count + tf.range(size, dtype=tf.int64),
                    tf.fill([corrupt], tf.constant(record_errors.CORRUPT_FILE_INDEX, tf.int64)),
                ],
                0,
            ),
            tf.concat([chunk, tf.fill([corrupt], message)], 0),
        )
        return (total, count + size), element

    initial = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    return flagged.concatenate(end_marker).scan(initial, count_bytes).unbatch()
