"""Images + label PNGs -> segmentation TFRecords; bad input exits 2 in one line."""

import glob

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from detection.tools import create_segmentation_tfrecord as tool


@pytest.fixture
def pairs(tmp_path):
    """Three images with label maps: grayscale PNG labels, and a palette one (VOC style)."""
    rng = np.random.default_rng(0)
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    maps = {}
    for stem, shape in (("b", (20, 30)), ("a", (16, 12)), ("c", (10, 10))):
        Image.fromarray(rng.integers(0, 256, shape + (3,), dtype=np.uint8)).save(
            images / f"{stem}.jpg"
        )
        label_map = rng.integers(0, 4, shape, dtype=np.uint8)
        label_map[0, 0] = 255
        maps[stem] = label_map
        label = Image.fromarray(label_map)
        if stem == "c":
            label = label.convert("P")  # palette indices are the class ids
            label.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
        label.save(labels / f"{stem}.png")
    assert Image.open(labels / "c.png").mode == "P"
    return images, labels, maps


def _decode(pattern):
    out = []
    for path in sorted(glob.glob(pattern)):
        for record in tf.data.TFRecordDataset(path):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            png = feature["image/segmentation/class/encoded"].bytes_list.value[0]
            out.append(
                {
                    "filename": feature["image/filename"].bytes_list.value[0].decode(),
                    "source_id": feature["image/source_id"].bytes_list.value[0].decode(),
                    "label": tf.io.decode_png(png).numpy()[..., 0],
                    "image": tf.io.decode_jpeg(
                        feature["image/encoded"].bytes_list.value[0]
                    ).numpy(),
                    "size": (
                        feature["image/height"].int64_list.value[0],
                        feature["image/width"].int64_list.value[0],
                    ),
                }
            )
    return out


def test_pairs_to_records(pairs, tmp_path):
    images, labels, maps = pairs
    prefix = str(tmp_path / "out" / "train")
    argv = [f"--image_dir={images}", f"--label_dir={labels}", f"--output_file_prefix={prefix}"]
    assert tool.main(argv + ["--num_shards=2"]) == 0
    records = _decode(prefix + "-*")
    # Sorted by stem, dealt to the shards in turn: shard 0 holds a and c, shard 1 holds b.
    assert [r["filename"] for r in records] == ["a.jpg", "c.jpg", "b.jpg"]
    assert [r["source_id"] for r in records] == ["0", "2", "1"]
    for record in records:
        stem = record["filename"][0]
        np.testing.assert_array_equal(record["label"], maps[stem])
        assert record["size"] == maps[stem].shape == record["image"].shape[:2]

    file_list = tmp_path / "list.txt"
    file_list.write_text("c\nb\n")
    assert (
        tool.main(argv[:2] + [f"--output_file_prefix={tmp_path / 'l'}", f"--file_list={file_list}"])
        == 0
    )
    assert [r["filename"] for r in _decode(str(tmp_path / "l-*"))] == ["c.jpg", "b.jpg"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_label", "label file not found"),
        ("size_mismatch", "is 5x5 but"),
        ("rgb_label", "expected one 8-bit channel"),
        ("missing_dir", "is not a directory"),
    ],
)
def test_bad_input_exits_2_with_one_line(pairs, tmp_path, capsys, case, message):
    images, labels, _ = pairs
    if case == "missing_label":
        (labels / "a.png").unlink()
    elif case == "size_mismatch":
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(labels / "a.png")
    elif case == "rgb_label":
        Image.fromarray(np.zeros((16, 12, 3), np.uint8)).save(labels / "a.png")
    elif case == "missing_dir":
        labels = tmp_path / "nope"
    prefix = tmp_path / "out" / "x"
    code = tool.main(
        [f"--image_dir={images}", f"--label_dir={labels}", f"--output_file_prefix={prefix}"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("create_segmentation_tfrecord: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not glob.glob(str(prefix) + "-*")
