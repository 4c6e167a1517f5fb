"""Synthetic shapes dataset: exact annotations, matching pixels and TFRecords, reuse logic."""

import filecmp
import glob
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
from pycocotools.coco import COCO
import pytest
import tensorflow as tf

from detection.dataloader.tf_example_decoder import (
    TfExampleClassificationDecoder,
    TfExampleDecoder,
)
from detection.tools.make_shapes_dataset import (
    CATEGORIES,
    ensure_shapes_dataset,
    make_classification_scene,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = 64


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("shapes"))
    return ensure_shapes_dataset(
        out_dir,
        num_train=30,
        num_val=4,
        image_size=SIZE,
        seed=0,
        num_train_shards=2,
        num_val_shards=1,
    )


def _erode(mask, pixels):
    """Binary erosion with a (2 * pixels + 1)^2 square, border counted as outside."""
    padded = np.pad(mask, pixels)
    out = np.ones_like(mask)
    for dy in range(-pixels, pixels + 1):
        for dx in range(-pixels, pixels + 1):
            out &= padded[pixels + dy : pixels + dy + SIZE, pixels + dx : pixels + dx + SIZE]
    return out


def test_layout_and_exact_annotations(shapes):
    for key in ("train_annotations", "val_annotations"):
        assert os.path.isfile(shapes[key])
    assert len(glob.glob(os.path.join(shapes["train_image_dir"], "*.jpg"))) == 30
    assert len(glob.glob(shapes["train_file_pattern"])) == 2
    assert len(glob.glob(shapes["val_file_pattern"])) == 1
    coco = COCO(shapes["train_annotations"])
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == [
        (1, "circle"),
        (2, "square"),
        (3, "triangle"),
    ]
    instance_counts = [len(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()]
    assert 0 in instance_counts and max(instance_counts) >= 3
    assert {a["category_id"] for a in coco.dataset["annotations"]} == {1, 2, 3}
    overlapping_boxes = 0
    for image_id in coco.getImgIds():
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        masks = [coco.annToMask(a).astype(bool) for a in annotations]
        # Visible masks never share a pixel.
        assert np.sum(masks, axis=0, dtype=int).max(initial=0) <= 1
        for annotation, mask in zip(annotations, masks):
            rows, cols = np.nonzero(mask)
            x0, y0 = cols.min(), rows.min()
            assert annotation["bbox"] == [x0, y0, cols.max() + 1 - x0, rows.max() + 1 - y0]
            assert annotation["area"] == mask.sum()
            assert annotation["iscrowd"] == 0
            assert max(annotation["bbox"][2:]) <= 0.5 * SIZE + 1
        boxes = [a["bbox"] for a in annotations]
        for i in range(len(boxes)):
            for j in range(i):
                (xa, ya, wa, ha), (xb, yb, wb, hb) = boxes[i], boxes[j]
                overlapping_boxes += min(xa + wa, xb + wb) > max(xa, xb) and min(
                    ya + ha, yb + hb
                ) > max(ya, yb)
    assert overlapping_boxes > 0


def test_pixels_follow_the_masks(shapes):
    coco = COCO(shapes["train_annotations"])
    checked = 0
    for image_info in coco.loadImgs(coco.getImgIds()):
        image = np.asarray(
            Image.open(os.path.join(shapes["train_image_dir"], image_info["file_name"])), np.float64
        )
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_info["id"]]))
        masks = [coco.annToMask(a).astype(bool) for a in annotations]
        background = _erode(~np.any(masks + [np.zeros((SIZE, SIZE), bool)], axis=0), 2)
        for mask in masks:
            interior = _erode(mask, 2)
            if interior.sum() < 10 or background.sum() < 100:
                continue
            # A solid fill inside the mask (JPEG noise only) that contrasts with the background.
            assert image[interior].std(axis=0).max() < 8
            assert np.linalg.norm(image[interior].mean(0) - image[background].mean(0)) > 40
            checked += 1
    assert checked >= 20


def test_tfrecords_match_the_json(shapes):
    for split in ("train", "val"):
        coco = COCO(shapes["%s_annotations" % split])
        decoder = TfExampleDecoder(include_mask=True)
        seen = []
        for record in tf.data.TFRecordDataset(sorted(glob.glob(shapes[split + "_file_pattern"]))):
            out = decoder.decode(record)
            image_id = int(out["source_id"])
            seen.append(image_id)
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
            assert out["image"].shape == (SIZE, SIZE, 3)
            np.testing.assert_array_equal(
                out["groundtruth_classes"].numpy(), [a["category_id"] for a in annotations]
            )
            expected_boxes = (
                np.array(
                    [[y, x, y + h, x + w] for x, y, w, h in (a["bbox"] for a in annotations)]
                ).reshape(-1, 4)
                / SIZE
            )
            np.testing.assert_allclose(out["groundtruth_boxes"].numpy(), expected_boxes, atol=1e-6)
            np.testing.assert_array_equal(
                out["groundtruth_area"].numpy(), [a["area"] for a in annotations]
            )
            expected_masks = np.array([coco.annToMask(a) for a in annotations]).reshape(
                -1, SIZE, SIZE
            )
            np.testing.assert_array_equal(out["groundtruth_instance_masks"].numpy(), expected_masks)
        assert sorted(seen) == sorted(coco.getImgIds())


def _all_files(root):
    return sorted(
        os.path.relpath(p, root)
        for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
        if os.path.isfile(p) and not p.endswith(".lock")
    )


def test_generation_is_deterministic(tmp_path):
    a = ensure_shapes_dataset(str(tmp_path / "a"), num_train=5, num_val=2, image_size=SIZE)
    b = ensure_shapes_dataset(str(tmp_path / "b"), num_train=5, num_val=2, image_size=SIZE)
    c = ensure_shapes_dataset(str(tmp_path / "c"), num_train=5, num_val=2, image_size=SIZE, seed=1)
    names = _all_files(a["root"])
    assert names == _all_files(b["root"])
    _, mismatch, errors = filecmp.cmpfiles(a["root"], b["root"], names, shallow=False)
    assert not mismatch and not errors
    assert not filecmp.cmp(a["train_annotations"], c["train_annotations"], shallow=False)


def test_reuse_and_regeneration(tmp_path):
    out_dir = str(tmp_path / "shapes")
    paths = ensure_shapes_dataset(out_dir, num_train=3, num_val=2, image_size=SIZE)
    sentinel = os.path.join(paths["train_image_dir"], "sentinel")
    open(sentinel, "w").close()
    ensure_shapes_dataset(out_dir, num_train=3, num_val=2, image_size=SIZE)
    assert os.path.exists(sentinel)  # complete dataset reused
    os.remove(os.path.join(out_dir, "COMPLETE"))  # as if generation had been killed
    ensure_shapes_dataset(out_dir, num_train=3, num_val=2, image_size=SIZE)
    assert not os.path.exists(sentinel) and os.path.exists(os.path.join(out_dir, "COMPLETE"))
    ensure_shapes_dataset(out_dir, num_train=4, num_val=2, image_size=SIZE)  # other parameters
    with open(paths["train_annotations"]) as f:
        assert len(json.load(f)["images"]) == 4


def test_command_line(tmp_path):
    out_dir = str(tmp_path / "cli")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "detection.tools.make_shapes_dataset",
            "--out_dir",
            out_dir,
            "--num_train",
            "3",
            "--num_val",
            "2",
            "--image_size",
            str(SIZE),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert "train_file_pattern: %s" % os.path.join(out_dir, "tfrecords", "train-*") in (
        result.stdout
    )
    assert len(glob.glob(os.path.join(out_dir, "val", "*.jpg"))) == 2
    assert os.path.exists(os.path.join(out_dir, "COMPLETE"))


def test_classification_variant_has_one_dominant_shape_per_image(tmp_path):
    for index in range(200):
        image, instances = make_classification_scene(np.random.default_rng([3, 0, index, 1]), SIZE)
        areas = [mask.sum() for _, mask in instances]
        # The dominant shape is drawn last and covers more than all distractors together and
        # more than twice any one of them.
        assert areas[-1] > sum(areas[:-1]) and areas[-1] > 2 * max(areas[:-1], default=0), areas
        assert len(instances) <= 3 and image.shape == (SIZE, SIZE, 3)

    paths = ensure_shapes_dataset(
        str(tmp_path / "cls"), num_train=30, num_val=6, image_size=SIZE, variant="classification"
    )
    with open(paths["label_map_file"]) as f:
        assert f.read() == "1:circle\n2:square\n3:triangle\n"
    decoder = TfExampleClassificationDecoder()
    for split, count in (("train", 30), ("val", 6)):
        labels = []
        for record in tf.data.TFRecordDataset(sorted(glob.glob(paths[f"{split}_file_pattern"]))):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            name = feature["image/class/text"].bytes_list.value[0].decode()
            label = int(decoder.decode(record)["label"])
            # The label, the class directory and the generator's dominant shape agree.
            directory, file_name = feature["image/filename"].bytes_list.value[0].decode().split("/")
            index = int(file_name.split(".")[0]) - 1
            rng = np.random.default_rng([0, ("train", "val").index(split), index, 1])
            assert (
                name
                == directory
                == CATEGORIES[make_classification_scene(rng, SIZE)[1][-1][0] - 1]["name"]
            )
            assert label == {"circle": 1, "square": 2, "triangle": 3}[name]
            labels.append(label)
        assert len(labels) == count
    assert len(set(labels)) >= 2


def test_segmentation_variant_labels_the_detection_scenes(tiny_shapes, tmp_path):
    """Same seed and sizes as the session's detection dataset: same images, label maps equal
    to the union of its instance masks."""
    paths = ensure_shapes_dataset(
        str(tmp_path / "seg"),
        num_train=24,
        num_val=8,
        image_size=64,
        seed=1,
        num_train_shards=2,
        num_val_shards=1,
        variant="segmentation",
    )
    coco = COCO(tiny_shapes["val_annotations"])
    checked = 0
    for record in tf.data.TFRecordDataset(sorted(glob.glob(paths["val_file_pattern"]))):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        file_name = feature["image/filename"].bytes_list.value[0].decode()
        png = feature["image/segmentation/class/encoded"].bytes_list.value[0]
        label_map = tf.io.decode_png(png).numpy()[..., 0]
        image_id = int(file_name.split(".")[0])
        expected = np.zeros((64, 64), np.uint8)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            expected[coco.annToMask(annotation).astype(bool)] = annotation["category_id"]
        np.testing.assert_array_equal(label_map, expected)
        detection_jpeg = os.path.join(tiny_shapes["val_image_dir"], file_name)
        with open(detection_jpeg, "rb") as f:
            assert feature["image/encoded"].bytes_list.value[0] == f.read()
        checked += 1
    assert checked == 8
