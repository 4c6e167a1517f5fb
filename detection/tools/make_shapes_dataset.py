"""Generates a tiny synthetic COCO-format detection / instance segmentation dataset.

Each image is a background (solid colour, linear gradient or noise) with 0-4 filled shapes of
3 classes: circle (category id 1), square (2, axis-aligned), triangle (3, rotated). Shapes are
12%-50% of the image side, randomly coloured (contrasting with the background) and may
overlap; a shape may hide at most half of any earlier shape. Annotations are exact: the mask
is the set of visible pixels (pixel centres inside the shape and not covered by a later
shape), the box is tight around the mask (COCO [x, y, w, h] in pixel edges, no +1), the area
is the pixel count, and iscrowd is always 0. Masks are stored as COCO compressed RLE.

Generation is deterministic: image i of a split depends only on (seed, split, i).

Two more variants of the same scenes (`--variant`, each in its own out_dir):
  classification: one dominant shape (45%-75% of the side) drawn over 0-2 small distractors
    (8%-16%) of any class; the image's class is the dominant shape's. Written as an image
    folder (train/circle/000001.jpg ...) and converted by `create_image_folder_tfrecord`
    (labels circle=1, square=2, triangle=3; tfrecords/train_label_map.txt).
  segmentation: the detection scenes (the very same images for the same seed) with semantic
    label maps: each pixel holds the category id of the visible shape covering it, 0 for the
    background. Written as train/images/000001.jpg + train/labels/000001.png and converted by
    `create_segmentation_tfrecord`.

Layout under out_dir:
  train/000001.jpg ..., val/000001.jpg ...
  annotations/instances_train.json, annotations/instances_val.json
  tfrecords/train-0000i-of-0000N.tfrecord, tfrecords/val-... (with masks)
  COMPLETE (written last, holds the generation parameters)

Usage:
  python -m detection.tools.make_shapes_dataset --out_dir=D [--num_train=2000 --num_val=200
      --image_size=128 --seed=0 --variant=detection|classification|segmentation]

Bad flags, or an out_dir that cannot be written, end the process with exit code 2 and one line
on stderr (`detection.cli`).
"""

import sys

from detection import cli

if __name__ == "__main__":
    # Before the imports below load TensorFlow, which prints start-up lines on stderr.
    cli.quiet_tensorflow()

import fcntl  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from pycocotools import mask as mask_api  # noqa: E402

from detection.tools import (  # noqa: E402
    create_coco_tfrecord,
    create_image_folder_tfrecord,
    create_segmentation_tfrecord,
)

_log = logging.getLogger(__name__)
PROG = "make_shapes_dataset"
# Shapes are 12%-50% of the side: below 16 px the smallest would be under 2 px.
MIN_IMAGE_SIZE = 16

CATEGORIES = (
    {"id": 1, "name": "circle"},
    {"id": 2, "name": "square"},
    {"id": 3, "name": "triangle"},
)

_MARKER = "COMPLETE"
_SPLITS = ("train", "val")
_NUM_SHAPES_PROBABILITIES = (0.1, 0.25, 0.25, 0.2, 0.2)  # for 0, 1, 2, 3, 4 shapes
_MIN_SIZE_FRACTION, _MAX_SIZE_FRACTION = 0.12, 0.5
_MAX_HIDDEN_FRACTION = 0.5
_MIN_COLOR_DISTANCE = 100.0
_DOMINANT_SIZE_FRACTIONS = (0.45, 0.75)
_DISTRACTOR_SIZE_FRACTIONS = (0.08, 0.16)
VARIANTS = ("detection", "classification", "segmentation")


def _background(rng, size):
    """Returns a float32 [size, size, 3] background in [0, 255]."""
    kind = rng.integers(3)
    color = rng.uniform(0, 255, 3)
    if kind == 0:
        return np.broadcast_to(color, (size, size, 3)).astype(np.float32)
    if kind == 1:
        other = rng.uniform(0, 255, 3)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
        t = np.cos(angle) * xx + np.sin(angle) * yy
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        return (color * (1 - t[..., None]) + other * t[..., None]).astype(np.float32)
    noise = rng.normal(0, rng.uniform(10, 40), (size, size, 3))
    return np.clip(color + noise, 0, 255).astype(np.float32)


def _shape_mask(rng, category_id, size, yy, xx, fractions=(_MIN_SIZE_FRACTION, _MAX_SIZE_FRACTION)):
    """Returns a bool [size, size] mask of one random shape fully inside the image."""
    side = rng.uniform(*fractions) * size
    half = side / 2
    cy, cx = rng.uniform(half, size - half, 2)
    if category_id == 1:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= half**2
    if category_id == 2:
        return (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
    # Triangle: equilateral, circumradius `half`, random rotation. A point is inside when it is
    # on the same side of all three edges (either sign, whatever the vertex orientation).
    angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
    vy, vx = cy + half * np.sin(angles), cx + half * np.cos(angles)
    crosses = [
        (vx[(k + 1) % 3] - vx[k]) * (yy - vy[k]) - (vy[(k + 1) % 3] - vy[k]) * (xx - vx[k])
        for k in range(3)
    ]
    return np.all([c >= 0 for c in crosses], axis=0) | np.all([c <= 0 for c in crosses], axis=0)


def make_scene(rng, size):
    """Draws one scene.

    Returns:
      (image, instances): image uint8 [size, size, 3]; instances a list of
      (category_id, visible bool mask [size, size]) in drawing order.
    """
    image = _background(rng, size)
    background_mean = image.reshape(-1, 3).mean(0)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    num_shapes = rng.choice(len(_NUM_SHAPES_PROBABILITIES), p=_NUM_SHAPES_PROBABILITIES)
    instances = []
    for _ in range(num_shapes):
        category_id = int(rng.integers(1, len(CATEGORIES) + 1))
        for _ in range(10):
            mask = _shape_mask(rng, category_id, size, yy, xx)
            # Earlier shapes must stay mostly visible so their boxes remain meaningful.
            if mask.any() and all(
                (m & ~mask).sum() >= (1 - _MAX_HIDDEN_FRACTION) * m.sum() for _, m in instances
            ):
                break
        else:
            continue
        for _ in range(10):
            color = rng.uniform(0, 255, 3)
            if np.linalg.norm(color - background_mean) >= _MIN_COLOR_DISTANCE:
                break
        instances = [(c, m & ~mask) for c, m in instances]
        instances.append((category_id, mask))
        image[mask] = color
    return np.round(image).astype(np.uint8), instances


def make_classification_scene(rng, size):
    """Draws one classification scene: 0-2 small distractors, then the dominant shape on top.

    Returns:
      (image, instances) as `make_scene`: image uint8 [size, size, 3]; instances a list of
      (category_id, visible bool mask [size, size]) in drawing order, the dominant shape last
      (its category is the image's class).
    """
    image = _background(rng, size)
    background_mean = image.reshape(-1, 3).mean(0)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    shapes = [
        (int(rng.integers(1, len(CATEGORIES) + 1)), _DISTRACTOR_SIZE_FRACTIONS)
        for _ in range(rng.integers(0, 3))
    ]
    shapes.append((int(rng.integers(1, len(CATEGORIES) + 1)), _DOMINANT_SIZE_FRACTIONS))
    instances = []
    for category_id, fractions in shapes:
        mask = _shape_mask(rng, category_id, size, yy, xx, fractions)
        for _ in range(10):
            color = rng.uniform(0, 255, 3)
            if np.linalg.norm(color - background_mean) >= _MIN_COLOR_DISTANCE:
                break
        instances = [(c, m & ~mask) for c, m in instances] + [(category_id, mask)]
        image[mask] = color
    return np.round(image).astype(np.uint8), instances


def semantic_label_map(instances, size):
    """uint8 [size, size]: the category id of the visible instance at each pixel, else 0."""
    label_map = np.zeros((size, size), np.uint8)
    for category_id, mask in instances:
        label_map[mask] = category_id
    return label_map


def _annotation(mask, category_id, annotation_id, image_id):
    rows, cols = np.nonzero(mask)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        "area": float(mask.sum()),
        "iscrowd": 0,
        "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
    }


def write_split(out_dir, split, num_images, image_size, seed):
    """Writes the images and COCO JSON of one split; returns the JSON path."""
    image_dir = os.path.join(out_dir, split)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, _SPLITS.index(split), index])
        image, instances = make_scene(rng, image_size)
        image_id = index + 1
        file_name = "%06d.jpg" % image_id
        Image.fromarray(image).save(os.path.join(image_dir, file_name), quality=95)
        images.append(
            {"id": image_id, "file_name": file_name, "height": image_size, "width": image_size}
        )
        for category_id, mask in instances:
            annotations.append(_annotation(mask, category_id, len(annotations) + 1, image_id))
    annotations_file = os.path.join(out_dir, "annotations", "instances_%s.json" % split)
    os.makedirs(os.path.dirname(annotations_file), exist_ok=True)
    with open(annotations_file, "w") as f:
        json.dump(
            {
                "info": {"description": "synthetic shapes", "seed": seed},
                "images": images,
                "annotations": annotations,
                "categories": list(CATEGORIES),
            },
            f,
        )
    return annotations_file


def write_classification_split(out_dir, split, num_images, image_size, seed):
    """Writes `out_dir/split/<class name>/NNNNNN.jpg`; returns that directory."""
    split_dir = os.path.join(out_dir, split)
    names = {c["id"]: c["name"] for c in CATEGORIES}
    for name in names.values():
        os.makedirs(os.path.join(split_dir, name), exist_ok=True)
    for index in range(num_images):
        # A stream of its own (4th seed word), so the detection scenes stay as they were.
        rng = np.random.default_rng([seed, _SPLITS.index(split), index, 1])
        image, instances = make_classification_scene(rng, image_size)
        category_id = instances[-1][0]
        path = os.path.join(split_dir, names[category_id], "%06d.jpg" % (index + 1))
        Image.fromarray(image).save(path, quality=95)
    return split_dir


def write_segmentation_split(out_dir, split, num_images, image_size, seed):
    """Writes `out_dir/split/images/NNNNNN.jpg` and `.../labels/NNNNNN.png`; returns both dirs."""
    image_dir = os.path.join(out_dir, split, "images")
    label_dir = os.path.join(out_dir, split, "labels")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    for index in range(num_images):
        # The detection split's stream: the same scenes, with label maps instead of instances.
        rng = np.random.default_rng([seed, _SPLITS.index(split), index])
        image, instances = make_scene(rng, image_size)
        stem = "%06d" % (index + 1)
        Image.fromarray(image).save(os.path.join(image_dir, stem + ".jpg"), quality=95)
        label_map = semantic_label_map(instances, image_size)
        Image.fromarray(label_map).save(os.path.join(label_dir, stem + ".png"))
    return image_dir, label_dir


def _paths(out_dir):
    return {
        "root": out_dir,
        "train_image_dir": os.path.join(out_dir, "train"),
        "val_image_dir": os.path.join(out_dir, "val"),
        "train_annotations": os.path.join(out_dir, "annotations", "instances_train.json"),
        "val_annotations": os.path.join(out_dir, "annotations", "instances_val.json"),
        "train_file_pattern": os.path.join(out_dir, "tfrecords", "train-*"),
        "val_file_pattern": os.path.join(out_dir, "tfrecords", "val-*"),
    }


def _variant_paths(out_dir, variant):
    if variant == "detection":
        return _paths(out_dir)
    paths = {"root": out_dir}
    for split in _SPLITS:
        if variant == "segmentation":
            paths[f"{split}_image_dir"] = os.path.join(out_dir, split, "images")
            paths[f"{split}_label_dir"] = os.path.join(out_dir, split, "labels")
        else:
            paths[f"{split}_image_dir"] = os.path.join(out_dir, split)
    if variant == "classification":
        paths["label_map_file"] = os.path.join(out_dir, "tfrecords", "train_label_map.txt")
    paths["train_file_pattern"] = os.path.join(out_dir, "tfrecords", "train-*")
    paths["val_file_pattern"] = os.path.join(out_dir, "tfrecords", "val-*")
    return paths


def _write_split(variant, out_dir, split, num_images, image_size, seed, num_shards):
    prefix = os.path.join(out_dir, "tfrecords", split)
    if variant == "classification":
        split_dir = write_classification_split(out_dir, split, num_images, image_size, seed)
        # The val split reuses the train split's label map, so that labels agree.
        label_map = None if split == "train" else _variant_paths(out_dir, variant)["label_map_file"]
        create_image_folder_tfrecord.create_tf_records(split_dir, prefix, num_shards, label_map)
    elif variant == "segmentation":
        image_dir, label_dir = write_segmentation_split(
            out_dir, split, num_images, image_size, seed
        )
        create_segmentation_tfrecord.create_tf_records(image_dir, label_dir, prefix, num_shards)
    else:
        annotations_file = write_split(out_dir, split, num_images, image_size, seed)
        create_coco_tfrecord.create_tf_record(
            os.path.join(out_dir, split), annotations_file, prefix, num_shards, include_masks=True
        )


def ensure_shapes_dataset(
    out_dir,
    num_train=2000,
    num_val=200,
    image_size=128,
    seed=0,
    num_train_shards=4,
    num_val_shards=2,
    variant="detection",
):
    """Generates the dataset under `out_dir` unless a complete one with these parameters exists.

    A `COMPLETE` marker holding the parameters is written last, so an interrupted generation,
    or one with other parameters, is discarded (only the subdirectories this function writes
    are removed) and redone. Concurrent callers are serialized with a lock file.

    Args:
      variant: 'detection' (COCO JSON + TFRecords with boxes and masks), 'classification' or
        'segmentation' (module docstring).

    Returns:
      A dict of paths: root, {train,val}_file_pattern (TFRecord glob patterns) and
      {train,val}_image_dir; for detection {train,val}_annotations (COCO JSON; records include
      masks), for classification label_map_file, for segmentation {train,val}_label_dir.

    Raises:
      ValueError: a count, size or variant out of range (the message names the argument).
      OSError: out_dir cannot be written.
    """
    check_arguments(num_train, num_val, image_size, seed, num_train_shards, num_val_shards)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    params = {
        "num_train": num_train,
        "num_val": num_val,
        "image_size": image_size,
        "seed": seed,
        "num_train_shards": num_train_shards,
        "num_val_shards": num_val_shards,
    }
    if variant != "detection":
        params["variant"] = variant
    paths = _variant_paths(out_dir, variant)
    marker = os.path.join(out_dir, _MARKER)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if os.path.exists(marker):
                with open(marker) as f:
                    if json.load(f) == params:
                        return paths
                os.remove(marker)
            for name in ("train", "val", "annotations", "tfrecords"):
                shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
            _log.info("Generating shapes dataset in %s with %s", out_dir, params)
            for split, num_images, num_shards in (
                ("train", num_train, num_train_shards),
                ("val", num_val, num_val_shards),
            ):
                # An empty shard is an unreadable file.
                _write_split(
                    variant,
                    out_dir,
                    split,
                    num_images,
                    image_size,
                    seed,
                    min(num_shards, num_images),
                )
            with open(marker, "w") as f:
                json.dump(params, f)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return paths


def check_arguments(num_train, num_val, image_size, seed, num_train_shards, num_val_shards):
    """Raises ValueError naming the first argument out of range."""
    checks = (
        ("num_train", num_train, 1),
        ("num_val", num_val, 1),
        ("image_size", image_size, MIN_IMAGE_SIZE),
        ("seed", seed, 0),
        ("num_train_shards", num_train_shards, 1),
        ("num_val_shards", num_val_shards, 1),
    )
    for name, value, minimum in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def build_parser():
    parser = cli.OneLineParser(
        prog=f"python -m detection.tools.{PROG}",
        allow_abbrev=False,
        description="Generates the synthetic shapes detection dataset (COCO JSON + TFRecords).",
    )
    parser.add_argument("--out_dir", required=True, help="output directory")
    parser.add_argument("--num_train", type=int, default=2000, help="number of training images")
    parser.add_argument("--num_val", type=int, default=200, help="number of validation images")
    parser.add_argument("--image_size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--variant", choices=VARIANTS, default="detection", help="which dataset to write"
    )
    return parser


def main(argv=None):
    """Generates the dataset; returns the exit code (2 with one line for bad flags)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        cli.configure_logging()
        paths = ensure_shapes_dataset(
            args.out_dir,
            num_train=args.num_train,
            num_val=args.num_val,
            image_size=args.image_size,
            seed=args.seed,
            variant=args.variant,
        )
    except (cli.UsageError, ValueError) as error:
        cli.print_error(PROG, error)
        return cli.EXIT_USAGE
    except OSError as error:
        cli.print_error(PROG, f"cannot write the dataset: {error}")
        return cli.EXIT_USAGE
    except tf.errors.OpError as error:
        cli.print_error(PROG, f"cannot write the dataset: {error.message}")
        return cli.EXIT_USAGE
    for key, value in paths.items():
        print("%s: %s" % (key, value))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
