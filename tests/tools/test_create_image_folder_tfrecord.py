"""Image-folder tree -> classification TFRecords + label map; bad input exits 2 in one line."""

import glob

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from detection.dataloader.tf_example_decoder import TfExampleClassificationDecoder
from detection.tools import create_image_folder_tfrecord as tool


def _save(path, array, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


@pytest.fixture
def tree(tmp_path):
    """train/{cat,dog}: an RGB JPEG, a grayscale PNG, a nested JPEG and a stray text file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "train"
    images = {}
    for name, rel, fmt, shape in (
        ("cat", "cat/a.jpg", "JPEG", (20, 30, 3)),
        ("cat", "cat/sub/b.jpeg", "JPEG", (16, 16, 3)),
        ("dog", "dog/c.png", "PNG", (24, 18)),
    ):
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        _save(root / rel, array, fmt)
        images[rel] = (name, array)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root, images


def _records(pattern):
    decoder = TfExampleClassificationDecoder()
    out = {}
    for path in sorted(glob.glob(pattern)):
        for record in tf.data.TFRecordDataset(path):
            example = tf.train.Example.FromString(record.numpy())
            feature = example.features.feature
            name = feature["image/filename"].bytes_list.value[0].decode()
            decoded = decoder.decode(record)
            out[name] = {
                "path": path,
                "label": int(decoded["label"]),
                "text": feature["image/class/text"].bytes_list.value[0].decode(),
                "image": decoded["image"].numpy(),
                "encoded": feature["image/encoded"].bytes_list.value[0],
                "size": (
                    feature["image/height"].int64_list.value[0],
                    feature["image/width"].int64_list.value[0],
                ),
            }
    return out


def test_tree_to_records_and_label_map(tree, tmp_path):
    root, images = tree
    prefix = str(tmp_path / "out" / "train")
    assert (
        tool.main([f"--image_dir={root}", f"--output_file_prefix={prefix}", "--num_shards=2"]) == 0
    )
    label_map_file = prefix + "_label_map.txt"
    with open(label_map_file) as f:
        assert f.read() == "1:cat\n2:dog\n"
    records = _records(prefix + "-*")
    assert len(glob.glob(prefix + "-*-of-00002.tfrecord")) == 2
    assert set(records) == set(images)  # the text file is skipped
    for rel, (name, array) in images.items():
        record = records[rel]
        assert record["text"] == name and record["label"] == {"cat": 1, "dog": 2}[name]
        assert record["size"] == array.shape[:2]
        assert record["image"].shape == array.shape[:2] + (3,)
        if rel.endswith(".png"):
            # Grayscale PNG -> RGB JPEG: lossy, so compare loosely.
            assert np.abs(record["image"].astype(int) - array[..., None]).mean() < 20
        else:
            assert record["encoded"] == (root / rel).read_bytes()  # RGB JPEG copied as is

    # A validation split converted with the training map keeps its labels, even with a class
    # directory missing.
    val = tmp_path / "val"
    _save(val / "dog" / "d.jpg", np.zeros((8, 8, 3), np.uint8), "JPEG")
    assert (
        tool.main(
            [
                f"--image_dir={val}",
                f"--output_file_prefix={tmp_path / 'out' / 'val'}",
                f"--label_map_file={label_map_file}",
            ]
        )
        == 0
    )
    assert _records(str(tmp_path / "out" / "val-*"))["dog/d.jpg"]["label"] == 2


def _error(argv, capsys):
    code = tool.main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_dir", "is not a directory"),
        ("no_classes", "has no class subdirectory"),
        ("broken_image", "cannot decode image file"),
        ("unknown_class", "not in the label map"),
        ("bad_label_map", "expected 'label:name'"),
    ],
)
def test_bad_input_exits_2_with_one_line(tree, tmp_path, capsys, case, message):
    root, _ = tree
    argv = [f"--output_file_prefix={tmp_path / 'out' / 'x'}"]
    if case == "missing_dir":
        argv.append(f"--image_dir={tmp_path / 'nope'}")
    elif case == "no_classes":
        (tmp_path / "empty").mkdir()
        argv.append(f"--image_dir={tmp_path / 'empty'}")
    elif case == "broken_image":
        (root / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
        argv.append(f"--image_dir={root}")
    else:
        label_map = tmp_path / "labels.txt"
        label_map.write_text("1:cat\n" if case == "unknown_class" else "cat\n")
        argv += [f"--image_dir={root}", f"--label_map_file={label_map}"]
    code, err = _error(argv, capsys)
    assert code == 2
    assert err.startswith("create_image_folder_tfrecord: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not glob.glob(str(tmp_path / "out" / "x-*"))  # no partial output left
