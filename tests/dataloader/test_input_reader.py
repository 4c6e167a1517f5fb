"""InputReader: file matching, host sharding, eval padding, training batches, corrupt files."""

import os

import numpy as np
import pytest
import tensorflow as tf

from detection.dataloader import input_reader
from detection.dataloader.input_reader import InputReader
from detection.dataloader.tf_example_decoder import TfExampleDecoder


def _write_files(directory, counts, start=0):
    """Writes TFRecord files whose records are the ascii ids start, start+1, ...; returns paths."""
    os.makedirs(directory, exist_ok=True)
    paths, next_id = [], start
    for index, count in enumerate(counts):
        path = os.path.join(directory, "data-%05d.tfrecord" % index)
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(count):
                writer.write(str(next_id).encode())
                next_id += 1
        paths.append(path)
    return paths


def _parser(record):
    source_id = tf.strings.to_number(record, tf.int64)
    features = {
        "source_ids": source_id,
        "images": tf.fill([4, 4, 3], tf.cast(source_id, tf.float32)),
    }
    labels = {
        "name": record,
        "flag": tf.equal(source_id % 2, 0),
        "pixels": tf.cast(tf.fill([2], source_id % 256), tf.uint8),
    }
    return features, labels


def _context(pipeline_id, num_pipelines):
    return tf.distribute.InputContext(
        num_input_pipelines=num_pipelines,
        input_pipeline_id=pipeline_id,
        num_replicas_in_sync=num_pipelines,
    )


def _eval_ids(dataset):
    """Returns the ids of the valid elements, checking padding along the way."""
    ids = []
    for features, labels in dataset:
        valid = features["valid"].numpy()
        source_ids = features["source_ids"].numpy()
        # Valid elements first; padding is -1 / '' / 0 / False.
        assert list(valid) == sorted(valid, reverse=True)
        assert (source_ids[~valid] == -1).all() and (features["images"].numpy()[~valid] == -1).all()
        assert (labels["name"].numpy()[~valid] == b"").all()
        assert (labels["pixels"].numpy()[~valid] == 0).all()
        assert not labels["flag"].numpy()[~valid].any()
        np.testing.assert_array_equal(labels["name"].numpy()[valid].astype(int), source_ids[valid])
        ids.extend(source_ids[valid].tolist())
    return ids


def test_match_files_patterns(tmp_path):
    a = _write_files(str(tmp_path / "a"), [1, 1])
    b = _write_files(str(tmp_path / "b"), [1])
    pattern_a, pattern_b = str(tmp_path / "a" / "*"), str(tmp_path / "b" / "*.tfrecord")
    assert input_reader.match_files(pattern_a + "," + pattern_b) == a + b
    assert input_reader.match_files([pattern_b, pattern_a, a[0]]) == b + a
    missing = str(tmp_path / "c" / "train-*")
    with pytest.raises(ValueError, match=missing.replace("*", r"\*")):
        input_reader.match_files([pattern_a, missing])
    with pytest.raises(ValueError, match="nothing-\\*"):
        InputReader(str(tmp_path / "nothing-*"), _parser, is_training=False, batch_size=2)()


def test_eval_pads_last_batch_and_sees_every_example_once(tmp_path):
    _write_files(str(tmp_path), [3, 2, 2])
    dataset = InputReader(str(tmp_path / "*"), _parser, is_training=False, batch_size=3)()
    features_spec, labels_spec = dataset.element_spec
    assert features_spec["images"].shape.as_list() == [3, 4, 4, 3]
    assert features_spec["valid"].shape.as_list() == [3]
    assert labels_spec["name"].shape.as_list() == [3]
    assert len(list(dataset)) == 3
    assert sorted(_eval_ids(dataset)) == list(range(7))


def test_eval_with_exact_multiple_has_no_padding(tmp_path):
    _write_files(str(tmp_path), [2, 2])
    dataset = InputReader(str(tmp_path / "*"), _parser, is_training=False, batch_size=2)()
    assert all(f["valid"].numpy().all() for f, _ in dataset)
    assert sorted(_eval_ids(dataset)) == [0, 1, 2, 3]


@pytest.mark.parametrize("counts", [[3, 1, 2, 4, 1], [5]])
def test_two_pipelines_see_disjoint_data(tmp_path, counts):
    # Five files shard by file; a single file falls back to sharding by record.
    _write_files(str(tmp_path), counts)
    reader = InputReader(str(tmp_path / "*"), _parser, is_training=False, batch_size=2)
    seen = [_eval_ids(reader(_context(i, 2))) for i in range(2)]
    assert seen[0] and seen[1]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(sum(counts)))
    if len(counts) > 1:
        first_ids = np.cumsum([0] + counts[:-1])  # file k holds ids first_ids[k] ...
        files_of = [{int(np.searchsorted(first_ids, i, side="right")) - 1 for i in s} for s in seen]
        assert files_of == [{0, 2, 4}, {1, 3}]


def test_training_batches_repeat_epochs(tmp_path):
    _write_files(str(tmp_path), [4, 3])
    dataset = InputReader(
        str(tmp_path / "*"),
        _parser,
        is_training=True,
        batch_size=2,
        shuffle_buffer=8,
        deterministic=True,
    )()
    features_spec, _ = dataset.element_spec
    assert features_spec["source_ids"].shape.as_list() == [2]
    assert "valid" not in features_spec
    ids = [i for f, _ in dataset.take(7) for i in f["source_ids"].numpy().tolist()]
    # The shuffle sits before the repeat: each block of 7 is one epoch.
    assert sorted(ids[:7]) == sorted(ids[7:]) == list(range(7))


def test_deterministic_training_order_is_reproducible(tmp_path):
    _write_files(str(tmp_path), [10, 10, 10])

    def first_ids(seed):
        dataset = InputReader(
            str(tmp_path / "*"),
            _parser,
            is_training=True,
            batch_size=3,
            shuffle_buffer=16,
            deterministic=True,
            seed=seed,
        )()
        return [f["source_ids"].numpy().tolist() for f, _ in dataset.take(5)]

    assert first_ids(1) == first_ids(1)
    assert first_ids(1) != first_ids(2)


def _corrupt(path, how):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if how == "truncate":
        data = data[:-3]
    else:  # flip a byte of the second record's payload, breaking its CRC
        data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(data))


def test_files_longer_than_a_check_chunk_read_completely(tmp_path):
    _write_files(str(tmp_path), [17, 32, 1])
    dataset = InputReader(str(tmp_path / "*"), _parser, is_training=False, batch_size=4)()
    assert sorted(_eval_ids(dataset)) == list(range(50))


@pytest.mark.parametrize("how", ["truncate", "flip"])
@pytest.mark.parametrize("is_training", [False, True])
@pytest.mark.parametrize("num_records", [3, 40])
def test_corrupt_file_error_names_the_file(tmp_path, how, is_training, num_records):
    paths = _write_files(str(tmp_path), [3, num_records, 3])
    _corrupt(paths[1], how)
    dataset = InputReader(str(tmp_path / "*"), _parser, is_training=is_training, batch_size=2)()
    with pytest.raises(tf.errors.InvalidArgumentError, match=paths[1]):
        for _ in dataset.take(100):  # past the end of the bad file
            pass


def test_eval_parser_must_return_features_dict(tmp_path):
    _write_files(str(tmp_path), [3])
    with pytest.raises(TypeError, match="valid"):
        InputReader(str(tmp_path / "*"), lambda r: (r, r), is_training=False, batch_size=2)()


def test_unsupported_dataset_type(tmp_path):
    with pytest.raises(ValueError, match="sstable"):
        InputReader(
            str(tmp_path / "*"), _parser, is_training=False, batch_size=2, dataset_type="sstable"
        )


def test_reads_converter_output_with_decoder(tmp_path):
    """The generic pieces together: tf.Examples -> decoder -> padded batches."""
    path = str(tmp_path / "ex.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(3):
            image = tf.io.encode_png(tf.fill([8, 8, 3], tf.constant(i * 40, tf.uint8))).numpy()
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "image/encoded": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[image])
                        ),
                        "image/source_id": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[str(100 + i).encode()])
                        ),
                    }
                )
            )
            writer.write(example.SerializeToString())
    decoder = TfExampleDecoder()

    def parser(record):
        decoded = decoder.decode(record)
        return (
            {
                "images": tf.image.convert_image_dtype(decoded["image"], tf.float32),
                "source_ids": decoded["source_id"],
            },
            {},
        )

    dataset = InputReader(path, parser, is_training=False, batch_size=2)()
    batches = list(dataset)
    assert len(batches) == 2
    assert batches[1][0]["source_ids"].numpy().tolist() == [102, -1]
