"""Generic input pipeline: TFRecord files -> parsed, batched tf.data.Dataset.

The reader knows nothing of models; a model-specific `parser_fn` turns one serialized record
into `(features, labels)`. Behaviour:

  * Files: comma-separated pattern string or list of patterns; each must match something.
  * Sharding across hosts: one input pipeline per host; pipeline i reads files i, i+n, i+2n...
    of the sorted file list. With fewer files than pipelines every pipeline reads all files in
    the same order and keeps every n-th record instead, so coverage stays disjoint.
  * Training: files shuffled, parallel interleave, record shuffle, repeat forever, parallel
    parse, batch with drop_remainder=True. A second, paired stream (copy-paste's objects to
    paste) can be zipped with the records: the parser then takes `(record, element)`.
  * Evaluation: no shuffle, no repeat, every record exactly once. The last partial batch is
    padded to `batch_size` with dummy elements, so batches keep a static shape. Padding is
    flagged twice: a `features['valid']` `[batch_size]` bool tensor (False for padding) is
    added to every eval batch, and dummy elements are filled with -1 (signed integer and
    float tensors; 0 for unsigned, False for bool, '' for strings), so a padded `source_id`
    is -1, as the COCO evaluator and the instance-padding convention expect.
  * Bad data: a directory, an empty, unreadable, corrupt or truncated file is named
    (`tfrecord_files`); a record the parser fails on (not a tf.Example, no or an undecodable
    image, labels and boxes that disagree, a class id out of range...) fails the pipeline
    with an error naming its file and index (`record_errors`).
"""

import logging

import tensorflow as tf

from detection.dataloader import record_errors, tfrecord_files
from detection.dataloader.tfrecord_files import match_files

__all__ = ["InputReader", "match_files"]

_log = logging.getLogger(__name__)

_SUPPORTED_DATASET_TYPES = ("tfrecord",)


def _pad_to_batch_size(element, batch_size):
    """Pads a batch to `batch_size` along axis 0 (fill -1) and adds `valid` to its features."""
    flat = tf.nest.flatten(element)
    num_real = tf.shape(flat[0])[0]

    def pad(t):
        filler_shape = tf.concat([[batch_size - num_real], tf.shape(t)[1:]], 0)
        if t.dtype.is_floating or (t.dtype.is_integer and not t.dtype.is_unsigned):
            filler = tf.fill(filler_shape, tf.constant(-1, t.dtype))
        else:
            filler = tf.zeros(filler_shape, t.dtype)
        padded = tf.concat([t, filler], 0)
        padded.set_shape([batch_size] + t.shape[1:].as_list())
        return padded

    element = tf.nest.map_structure(pad, element)
    valid = tf.range(batch_size) < num_real
    if isinstance(element, dict):
        features = element
    elif isinstance(element, tuple) and element and isinstance(element[0], dict):
        features = element[0]
    else:
        raise TypeError(
            "For evaluation the parser must return a dict or (features dict, labels) "
            'so that padding can be flagged in features["valid"]; got %r' % (element,)
        )
    if "valid" in features:
        raise ValueError(
            'The parser output already has a "valid" feature; it is reserved for '
            "marking evaluation padding"
        )
    features = dict(features, valid=valid)
    if isinstance(element, dict):
        return features
    return (features,) + tuple(element[1:])


class InputReader:
    """Builds the dataset of one input pipeline; call it with a tf.distribute.InputContext."""

    def __init__(
        self,
        file_pattern,
        parser_fn,
        is_training,
        batch_size,
        dataset_type="tfrecord",
        shuffle_buffer=1024,
        deterministic=False,
        cycle_length=32,
        seed=None,
        paired_dataset_fn=None,
    ):
        """Initializes the reader.

        Args:
          file_pattern: glob pattern, comma-separated patterns, or a list of patterns.
          parser_fn: maps one serialized record ([] string) to `(features, labels)` (or a dict)
            of statically shaped tensors.
          is_training: training (shuffle, repeat, drop remainder) or evaluation (one pass,
            padded last batch with features['valid']).
          batch_size: per-replica batch size.
          dataset_type: only 'tfrecord'.
          shuffle_buffer: record shuffle buffer size (training).
          deterministic: keep a reproducible element order (ordered parallel interleave/map; with
            seed=None the shuffles use seed 0). For tests and debugging; slower.
          cycle_length: number of files read concurrently.
          seed: shuffle seed (training).
          paired_dataset_fn: optional `input_context -> tf.data.Dataset` (training only, an
            endless dataset); each record is zipped with one of its elements and parsed as
            `parser_fn(record, element)`.
        """
        if dataset_type not in _SUPPORTED_DATASET_TYPES:
            raise ValueError(
                "Unsupported dataset_type %r; supported: %s"
                % (dataset_type, ", ".join(_SUPPORTED_DATASET_TYPES))
            )
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1, got %r" % batch_size)
        if paired_dataset_fn is not None and not is_training:
            raise ValueError("a paired dataset (copy-paste objects) is read in training only")
        self._file_pattern = file_pattern
        self._parser_fn = parser_fn
        self._is_training = is_training
        self._batch_size = batch_size
        self._shuffle_buffer = shuffle_buffer
        self._deterministic = deterministic
        self._cycle_length = cycle_length
        self._seed = 0 if (seed is None and deterministic) else seed
        self._paired_dataset_fn = paired_dataset_fn

    def parsed(self, input_context=None):
        """The dataset of this input pipeline's parsed records, not batched.

        Args:
          input_context: tf.distribute.InputContext or None (one pipeline).

        Returns:
          A tf.data.Dataset of parser outputs (endless in training).
        """
        files = match_files(self._file_pattern)
        num_pipelines = input_context.num_input_pipelines if input_context else 1
        pipeline_id = input_context.input_pipeline_id if input_context else 0
        shard_records = num_pipelines > 1 and len(files) < num_pipelines
        if num_pipelines > 1 and not shard_records:
            files = files[pipeline_id::num_pipelines]
        elif shard_records:
            _log.warning(
                "%d files for %d input pipelines: sharding by record, so every pipeline "
                "reads every file",
                len(files),
                num_pipelines,
            )

        files_dataset = tf.data.Dataset.from_tensor_slices(
            (tf.constant(files), tf.constant(tfrecord_files.checked_file_sizes(files), tf.int64))
        )
        if shard_records:
            dataset = files_dataset.flat_map(tfrecord_files.read_tfrecord_file_checked)
            dataset = dataset.shard(num_pipelines, pipeline_id)
        else:
            if self._is_training:
                files_dataset = files_dataset.shuffle(len(files), seed=self._seed)
            dataset = files_dataset.interleave(
                tfrecord_files.read_tfrecord_file_checked,
                cycle_length=min(self._cycle_length, len(files)),
                block_length=1,
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=self._deterministic,
            )

        if self._is_training:
            dataset = dataset.shuffle(self._shuffle_buffer, seed=self._seed).repeat()
        # Parsed in parallel but in order: see record_errors for how failures are located.
        paired = None if self._paired_dataset_fn is None else self._paired_dataset_fn(input_context)
        return record_errors.parse_records(
            dataset, self._parser_fn, finite=not self._is_training, paired_dataset=paired
        )

    def __call__(self, input_context=None):
        """Returns the batched dataset of this input pipeline.

        Args:
          input_context: tf.distribute.InputContext or None (one pipeline).

        Returns:
          A tf.data.Dataset of batched parser outputs with a static batch dimension.
        """
        dataset = self.parsed(input_context)
        if self._is_training:
            dataset = dataset.batch(self._batch_size, drop_remainder=True)
        else:
            batch_size = self._batch_size
            dataset = dataset.batch(batch_size, drop_remainder=False).map(
                lambda *element: _pad_to_batch_size(
                    element[0] if len(element) == 1 else element, batch_size
                )
            )

        options = tf.data.Options()
        options.deterministic = self._deterministic
        return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
