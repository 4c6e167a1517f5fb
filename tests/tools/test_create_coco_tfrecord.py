"""COCO JSON + images -> TFRecords -> TfExampleDecoder round trip, and broken-input errors."""

import hashlib
import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as mask_api
from pycocotools.coco import COCO
import pytest
import tensorflow as tf

from detection.dataloader.tf_example_decoder import TfExampleDecoder
from detection.tools import create_coco_tfrecord

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CATEGORIES = [
    {"id": 1, "name": "circle"},
    {"id": 2, "name": "square"},
    {"id": 7, "name": "triangle"},
]


def _smooth_image(height, width, channels, offset=0):
    yy, xx = np.mgrid[0:height, 0:width]
    # Smooth ramps (max 237) so JPEG re-encoding error stays small.
    planes = [20 + 1.2 * yy + 0.8 * xx + 15 * c + 0.5 * offset for c in range(channels)]
    return np.stack(planes, -1).astype(np.uint8)


def _crowd_rle(height, width):
    mask = np.zeros((height, width), np.uint8)
    mask[5:20, 10:30] = 1
    mask[25:30, 0:8] = 1
    # Uncompressed (column-major run lengths), the form COCO uses for crowd annotations.
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": [height, width], "counts": counts}


def _write_dataset(root):
    """Writes 5 images and a COCO JSON; returns (image_dir, json_path)."""
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir)
    Image.fromarray(_smooth_image(48, 64, 3)).save(os.path.join(image_dir, "rgb.jpg"), quality=95)
    Image.fromarray(_smooth_image(64, 64, 1)[..., 0]).save(
        os.path.join(image_dir, "gray.jpg"), quality=95
    )
    Image.fromarray(_smooth_image(40, 64, 4, offset=30)).save(os.path.join(image_dir, "rgba.png"))
    Image.fromarray(_smooth_image(64, 48, 3, offset=60)).save(
        os.path.join(image_dir, "empty.jpg"), quality=95
    )
    Image.fromarray(_smooth_image(56, 64, 4, offset=90), mode="CMYK").save(
        os.path.join(image_dir, "cmyk.jpg"), quality=95
    )
    images = [
        {"id": 101, "file_name": "rgb.jpg", "height": 48, "width": 64},
        {"id": 102, "file_name": "gray.jpg", "height": 64, "width": 64},
        {"id": 103, "file_name": "rgba.png", "height": 40, "width": 64},
        {"id": 104, "file_name": "empty.jpg", "height": 64, "width": 48},
        {"id": 105, "file_name": "cmyk.jpg", "height": 56, "width": 64},
    ]
    gray_rle = mask_api.encode(
        np.asfortranarray((_smooth_image(64, 64, 1)[..., 0] > 80).astype(np.uint8))
    )
    annotations = [
        {
            "id": 11,
            "image_id": 101,
            "category_id": 1,
            "iscrowd": 0,
            "area": 150.0,
            "bbox": [10.0, 5.0, 20.0, 15.0],
            "segmentation": [[10.0, 5.0, 30.0, 5.0, 30.0, 20.0, 10.0, 20.0]],
        },
        # Extends past the right and bottom borders: clipped to x in [50, 64], y in [30, 48].
        {
            "id": 12,
            "image_id": 101,
            "category_id": 7,
            "iscrowd": 0,
            "area": 400.0,
            "bbox": [50.0, 30.0, 30.0, 30.0],
            "segmentation": [[50.0, 30.0, 80.0, 30.0, 65.0, 60.0]],
        },
        {
            "id": 13,
            "image_id": 101,
            "category_id": 2,
            "iscrowd": 1,
            "area": 340.0,
            "bbox": [0.0, 5.0, 30.0, 25.0],
            "segmentation": _crowd_rle(48, 64),
        },
        # Entirely outside the image: dropped.
        {
            "id": 14,
            "image_id": 101,
            "category_id": 1,
            "iscrowd": 0,
            "area": 25.0,
            "bbox": [70.0, 10.0, 5.0, 5.0],
            "segmentation": [[70.0, 10.0, 75.0, 10.0, 75.0, 15.0]],
        },
        {
            "id": 21,
            "image_id": 102,
            "category_id": 7,
            "iscrowd": 0,
            "area": 900.5,
            "bbox": [0.5, 1.5, 60.25, 40.0],
            "segmentation": {"size": [64, 64], "counts": gray_rle["counts"].decode("ascii")},
        },
        # Two polygons, one of them degenerate (2 points): only the triangle counts.
        {
            "id": 31,
            "image_id": 103,
            "category_id": 2,
            "iscrowd": 0,
            "area": 120.0,
            "bbox": [3.0, 4.0, 30.0, 20.0],
            "segmentation": [[3.0, 4.0, 33.0, 4.0, 18.0, 24.0], [40.0, 5.0, 50.0, 5.0]],
        },
        # No 'area': the clipped box area (14 * 6) is written.
        {
            "id": 51,
            "image_id": 105,
            "category_id": 1,
            "iscrowd": 0,
            "bbox": [-4.0, 50.0, 18.0, 10.0],
            "segmentation": [[0.0, 50.0, 14.0, 50.0, 14.0, 56.0, 0.0, 56.0]],
        },
    ]
    json_path = os.path.join(root, "instances.json")
    with open(json_path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)
    return image_dir, json_path


def _expected_mask(coco, annotation):
    """Reference mask: pycocotools' annToMask, without the degenerate (< 3 points) polygons."""
    annotation = dict(annotation)
    if isinstance(annotation["segmentation"], list):
        annotation["segmentation"] = [p for p in annotation["segmentation"] if len(p) >= 6]
    return coco.annToMask(annotation)


def _read_records(paths):
    return [r.numpy() for p in paths for r in tf.data.TFRecordDataset(p)]


@pytest.fixture
def dataset(tmp_path):
    return _write_dataset(str(tmp_path))


def test_round_trip_through_decoder(dataset, tmp_path):
    image_dir, json_path = dataset
    prefix = str(tmp_path / "out" / "coco")
    paths = create_coco_tfrecord.create_tf_record(
        image_dir, json_path, prefix, num_shards=2, include_masks=True
    )
    assert paths == [prefix + "-00000-of-00002.tfrecord", prefix + "-00001-of-00002.tfrecord"]
    # Image i goes to shard i % 2, in JSON order.
    shard_ids = [
        [int(TfExampleDecoder().decode(r)["source_id"]) for r in _read_records([p])] for p in paths
    ]
    assert shard_ids == [[101, 103, 105], [102, 104]]

    coco = COCO(json_path)
    decoder = TfExampleDecoder(include_mask=True)
    decoded = {}
    for record in _read_records(paths):
        out = decoder.decode(tf.constant(record))
        decoded[int(out["source_id"])] = (out, tf.train.Example.FromString(record))
    assert sorted(decoded) == [101, 102, 103, 104, 105]

    for image_id, (out, example) in decoded.items():
        info = coco.imgs[image_id]
        height, width = info["height"], info["width"]
        annotations = [a for a in coco.imgToAnns[image_id] if a["id"] != 14]
        assert int(out["height"]) == height and int(out["width"]) == width
        assert out["image"].shape == (height, width, 3) and out["image"].dtype == tf.uint8
        n = len(annotations)
        expected_boxes = np.array(
            [
                [
                    max(a["bbox"][1], 0) / height,
                    max(a["bbox"][0], 0) / width,
                    min(a["bbox"][1] + a["bbox"][3], height) / height,
                    min(a["bbox"][0] + a["bbox"][2], width) / width,
                ]
                for a in annotations
            ],
            np.float32,
        ).reshape(n, 4)
        np.testing.assert_allclose(out["groundtruth_boxes"].numpy(), expected_boxes, atol=1e-6)
        np.testing.assert_array_equal(
            out["groundtruth_classes"].numpy(), [a["category_id"] for a in annotations]
        )
        np.testing.assert_array_equal(
            out["groundtruth_is_crowd"].numpy(), [bool(a["iscrowd"]) for a in annotations]
        )
        expected_area = [a.get("area", 14.0 * 6.0) for a in annotations]
        np.testing.assert_allclose(out["groundtruth_area"].numpy(), expected_area, rtol=1e-6)
        masks = out["groundtruth_instance_masks"].numpy()
        assert masks.shape == (n, height, width) and masks.dtype == np.float32
        for mask, annotation in zip(masks, annotations):
            np.testing.assert_array_equal(mask, _expected_mask(coco, annotation))

        features = example.features.feature
        encoded = features["image/encoded"].bytes_list.value[0]
        assert features["image/format"].bytes_list.value == [b"jpeg"]
        assert encoded[:2] == b"\xff\xd8"  # every stored image is a JPEG
        assert features["image/filename"].bytes_list.value == [info["file_name"].encode()]
        assert features["image/key/sha256"].bytes_list.value == [
            hashlib.sha256(encoded).hexdigest().encode()
        ]
        names = {c["id"]: c["name"].encode() for c in CATEGORIES}
        assert list(features["image/object/class/text"].bytes_list.value) == [
            names[a["category_id"]] for a in annotations
        ]

    # The clipped box and the RLE crowd box, spelled out.
    np.testing.assert_allclose(
        decoded[101][0]["groundtruth_boxes"].numpy()[1], [30 / 48, 50 / 64, 1.0, 1.0], atol=1e-6
    )
    assert decoded[104][0]["groundtruth_boxes"].shape == (0, 4)
    assert decoded[104][0]["groundtruth_instance_masks"].shape == (0, 64, 48)

    # Pixels: an RGB JPEG is copied unchanged; the others are re-encoded as RGB JPEG.
    with open(os.path.join(image_dir, "rgb.jpg"), "rb") as f:
        rgb_bytes = f.read()
    assert decoded[101][1].features.feature["image/encoded"].bytes_list.value[0] == rgb_bytes
    references = {
        102: np.repeat(_smooth_image(64, 64, 1), 3, axis=-1),
        103: _smooth_image(40, 64, 4, offset=30)[..., :3],
        105: np.asarray(Image.open(os.path.join(image_dir, "cmyk.jpg")).convert("RGB")),
    }
    for image_id, reference in references.items():
        difference = np.abs(decoded[image_id][0]["image"].numpy().astype(float) - reference)
        assert difference.mean() < 2.0, image_id
        assert difference.max() < 24, image_id


def test_without_masks_and_worker_pool_give_same_bytes(dataset, tmp_path):
    image_dir, json_path = dataset
    serial = create_coco_tfrecord.create_tf_record(
        image_dir, json_path, str(tmp_path / "a" / "x"), num_shards=3
    )
    pooled = create_coco_tfrecord.create_tf_record(
        image_dir, json_path, str(tmp_path / "b" / "x"), num_shards=3, num_workers=2
    )
    assert _read_records(serial) == _read_records(pooled)
    example = tf.train.Example.FromString(_read_records(serial)[0])
    assert "image/object/mask" not in example.features.feature


def test_command_line(dataset, tmp_path):
    image_dir, json_path = dataset
    prefix = str(tmp_path / "cli" / "val")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "detection.tools.create_coco_tfrecord",
            "--image_dir",
            image_dir,
            "--object_annotations_file",
            json_path,
            "--output_file_prefix",
            prefix,
            "--num_shards",
            "1",
            "--include_masks",
        ],
        check=True,
        capture_output=True,
        cwd=REPO_ROOT,
    )
    records = _read_records([prefix + "-00000-of-00001.tfrecord"])
    assert len(records) == 5
    features = tf.train.Example.FromString(records[0]).features.feature
    assert len(features["image/object/mask"].bytes_list.value) == 3


def _rewrite_json(json_path, edit):
    with open(json_path) as f:
        groundtruth = json.load(f)
    edit(groundtruth)
    with open(json_path, "w") as f:
        json.dump(groundtruth, f)


def _annotation(groundtruth, annotation_id):
    return next(a for a in groundtruth["annotations"] if a["id"] == annotation_id)


def test_missing_image_file_names_the_file(dataset, tmp_path):
    image_dir, json_path = dataset
    os.remove(os.path.join(image_dir, "rgba.png"))
    prefix = str(tmp_path / "out" / "x")
    with pytest.raises(FileNotFoundError, match="rgba.png"):
        create_coco_tfrecord.create_tf_record(image_dir, json_path, prefix, num_shards=2)
    assert not os.listdir(tmp_path / "out")  # partial shards are removed


def test_image_size_mismatch_names_the_file(dataset):
    image_dir, json_path = dataset
    _rewrite_json(json_path, lambda g: g["images"][1].update(height=65))
    with pytest.raises(ValueError, match="gray.jpg"):
        create_coco_tfrecord.create_tf_record(image_dir, json_path, image_dir + "/o", 1)


@pytest.mark.parametrize(
    "annotation_id, change, include_masks",
    [
        (21, {"bbox": [0.5, 1.5, -3.0, 40.0]}, False),  # negative width
        (21, {"bbox": [0.5, 1.5, 3.0]}, False),  # three numbers
        (11, {"category_id": 99}, False),  # unknown category
        (31, {"segmentation": [[3.0, 4.0, 33.0, 4.0, 18.0]]}, True),  # odd polygon length
        (31, {"segmentation": "abc"}, True),  # neither polygon nor RLE
        (13, {"segmentation": {"size": [48, 64], "counts": [3, 4]}}, True),  # counts too short
        (21, {"segmentation": {"size": [32, 64], "counts": "abc"}}, True),  # wrong RLE size
    ],
)
def test_broken_annotation_names_the_annotation_id(dataset, annotation_id, change, include_masks):
    image_dir, json_path = dataset
    _rewrite_json(json_path, lambda g: _annotation(g, annotation_id).update(change))
    with pytest.raises(ValueError, match="Annotation id %d " % annotation_id):
        create_coco_tfrecord.create_tf_record(
            image_dir, json_path, image_dir + "/o", 1, include_masks=include_masks
        )


def test_png_masks_are_binary_pngs(dataset, tmp_path):
    image_dir, json_path = dataset
    paths = create_coco_tfrecord.create_tf_record(
        image_dir, json_path, str(tmp_path / "x"), num_shards=1, include_masks=True
    )
    example = tf.train.Example.FromString(_read_records(paths)[0])
    for png in example.features.feature["image/object/mask"].bytes_list.value:
        mask = np.asarray(Image.open(io.BytesIO(png)))
        assert mask.shape == (48, 64) and set(np.unique(mask)) <= {0, 1}
