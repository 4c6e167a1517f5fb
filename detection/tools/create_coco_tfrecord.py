"""Converts a COCO-format dataset (JSON + images) to sharded TFRecords of tf.Example.

The feature keys are the ones the TF Object Detection API and TF Model Garden converters write,
so records made here and there are interchangeable:

  image/encoded, image/format ('jpeg'), image/source_id (str(image id)), image/height,
  image/width, image/filename, image/key/sha256,
  image/object/bbox/{xmin,xmax,ymin,ymax} (normalized to [0, 1], clipped to the image),
  image/object/class/label (COCO category id), image/object/class/text (category name),
  image/object/is_crowd, image/object/area (COCO 'area', pixels),
  image/object/mask (with include_masks: one PNG per instance, values 0/1, image size).

Policies:
  * Images keep the order of the JSON 'images' list; image i goes to shard i % num_shards, so
    the output is byte-identical whatever num_workers is.
  * Images without annotations are kept. Images that are not RGB JPEG (grayscale, CMYK, RGBA,
    palette, PNG, ...) are re-encoded as RGB JPEG (quality 95); RGB JPEGs are copied unchanged.
  * Boxes are clipped to the image; a box that is empty after clipping (zero width/height or
    outside the image) is dropped with its mask (counted in the log), as the reference
    converters do. A polygon with fewer than 3 points encloses nothing and is dropped from its
    instance's mask.
  * Broken input raises: missing/undecodable image file or size mismatch with the JSON (names
    the file), and malformed bbox / negative width or height / unknown category / malformed
    segmentation (names the annotation id).

Usage:
  python -m detection.tools.create_coco_tfrecord --image_dir=D --object_annotations_file=F.json \
      --output_file_prefix=P --num_shards=N [--include_masks] [--num_workers=W]
"""

import collections
import contextlib
import functools
import hashlib
import io
import json
import math
import multiprocessing
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from pycocotools import mask as mask_api
import tensorflow as tf


def shard_paths(output_file_prefix, num_shards):
    """Returns the output file names `P-00000-of-0000N.tfrecord`, one per shard."""
    return [
        "%s-%05d-of-%05d.tfrecord" % (output_file_prefix, i, num_shards) for i in range(num_shards)
    ]


def load_coco_annotations(object_annotations_file):
    """Reads a COCO JSON file.

    Returns:
      (images, annotations_by_image_id, category_index): the 'images' list in file order, a dict
      image id -> list of annotation dicts (file order), and a dict category id -> name.

    Raises:
      ValueError: duplicate image ids, or an annotation whose image id is not in 'images'.
    """
    with tf.io.gfile.GFile(object_annotations_file, "r") as f:
        groundtruth = json.load(f)
    images = groundtruth["images"]
    image_ids = set()
    for image in images:
        if image["id"] in image_ids:
            raise ValueError("Duplicate image id %r in %s" % (image["id"], object_annotations_file))
        image_ids.add(image["id"])
    category_index = {c["id"]: c["name"] for c in groundtruth.get("categories", [])}
    annotations_by_image_id = collections.defaultdict(list)
    # Test-set files (image_info_test*.json) have no 'annotations' key.
    for annotation in groundtruth.get("annotations", []):
        if annotation.get("image_id") not in image_ids:
            raise ValueError(
                "Annotation id %r in %s refers to unknown image id %r"
                % (annotation.get("id"), object_annotations_file, annotation.get("image_id"))
            )
        annotations_by_image_id[annotation["image_id"]].append(annotation)
    return images, annotations_by_image_id, category_index


def _read_image_as_jpeg(image_path, expected_height, expected_width):
    """Returns the bytes of an RGB JPEG for `image_path`, re-encoding when needed."""
    if not tf.io.gfile.exists(image_path):
        raise FileNotFoundError("Image file not found: %s" % image_path)
    with tf.io.gfile.GFile(image_path, "rb") as f:
        data = f.read()
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as e:  # PIL raises several unrelated exception types.
        raise ValueError("Cannot decode image file %s: %s" % (image_path, e)) from e
    width, height = image.size
    if (height, width) != (expected_height, expected_width):
        raise ValueError(
            "Image file %s is %dx%d (h x w) but the annotations say %dx%d"
            % (image_path, height, width, expected_height, expected_width)
        )
    if image.format == "JPEG" and image.mode == "RGB":
        return data
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _clipped_box(annotation, height, width):
    """Returns the box `(xmin, ymin, xmax, ymax)` in pixels clipped to the image, or None if empty.

    Raises:
      ValueError: malformed bbox or negative width/height (names the annotation id).
    """
    bbox = annotation.get("bbox")
    ann_id = annotation.get("id")
    if (
        not isinstance(bbox, (list, tuple))
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
    ):
        raise ValueError(
            "Annotation id %r has a malformed bbox %r (want [x, y, w, h])" % (ann_id, bbox)
        )
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        raise ValueError(
            "Annotation id %r has a bbox with negative width or height: %r" % (ann_id, bbox)
        )
    xmin, xmax = min(max(x, 0.0), width), min(max(x + w, 0.0), width)
    ymin, ymax = min(max(y, 0.0), height), min(max(y + h, 0.0), height)
    if xmax <= xmin or ymax <= ymin:
        return None
    return xmin, ymin, xmax, ymax


def _segmentation_to_rle(annotation, height, width):
    """Returns the annotation's segmentation (polygons or RLE) as one compressed COCO RLE."""
    ann_id = annotation.get("id")
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list):
        polygons = []
        for polygon in segmentation:
            if (
                not isinstance(polygon, list)
                or len(polygon) % 2
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in polygon)
            ):
                raise ValueError(
                    "Annotation id %r has a malformed polygon in its segmentation" % ann_id
                )
            if len(polygon) >= 6:
                polygons.append([float(v) for v in polygon])
        if not polygons:
            return mask_api.encode(np.zeros((height, width), np.uint8, order="F"))
        return mask_api.merge(mask_api.frPyObjects(polygons, height, width))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(
                "Annotation id %r has an RLE of size %r for an image of size %r"
                % (ann_id, segmentation["size"], [height, width])
            )
        counts = segmentation["counts"]
        if isinstance(counts, list):
            if (
                not all(isinstance(c, int) and c >= 0 for c in counts)
                or sum(counts) != height * width
            ):
                raise ValueError(
                    "Annotation id %r has an uncompressed RLE whose counts do not sum to "
                    "height * width" % ann_id
                )
            return mask_api.frPyObjects(segmentation, height, width)
        if isinstance(counts, (str, bytes)):
            return {
                "size": [height, width],
                "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
            }
    raise ValueError(
        "Annotation id %r has a malformed segmentation of type %s"
        % (ann_id, type(segmentation).__name__)
    )


def _instance_mask_png(annotation, height, width):
    """Returns the instance mask as PNG bytes (uint8 values 0/1, [height, width])."""
    rle = _segmentation_to_rle(annotation, height, width)
    try:
        binary_mask = mask_api.decode(rle)
    except Exception as e:  # pycocotools raises bare Exceptions on bad RLE strings.
        raise ValueError(
            "Annotation id %r has an undecodable RLE: %s" % (annotation.get("id"), e)
        ) from e
    if binary_mask.shape != (height, width):
        raise ValueError(
            "Annotation id %r decodes to a mask of shape %r, want %r"
            % (annotation.get("id"), binary_mask.shape, (height, width))
        )
    buffer = io.BytesIO()
    Image.fromarray((binary_mask > 0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _bytes_feature(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _float_feature(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def create_tf_example(image, annotations, image_dir, category_index, include_masks=False):
    """Builds the tf.Example of one COCO image.

    Args:
      image: a COCO 'images' entry (needs 'id', 'file_name', 'height', 'width').
      annotations: the image's COCO annotation dicts.
      image_dir: directory holding `image['file_name']`.
      category_index: dict category id -> category name.
      include_masks: also write `image/object/mask` (PNG per instance).

    Returns:
      (tf.train.Example, num_skipped): num_skipped counts annotations dropped because their box
      is empty after clipping.
    """
    height, width = int(image["height"]), int(image["width"])
    image_path = os.path.join(image_dir, image["file_name"])
    encoded = _read_image_as_jpeg(image_path, height, width)

    xmin, xmax, ymin, ymax = [], [], [], []
    labels, texts, is_crowd, areas, masks = [], [], [], [], []
    num_skipped = 0
    for annotation in annotations:
        ann_id = annotation.get("id")
        category_id = annotation.get("category_id")
        if category_id not in category_index:
            raise ValueError(
                "Annotation id %r (image %s) has category id %r not in categories"
                % (ann_id, image_path, category_id)
            )
        crowd = annotation.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise ValueError("Annotation id %r has iscrowd=%r, want 0 or 1" % (ann_id, crowd))
        box = _clipped_box(annotation, height, width)
        if box is None:
            num_skipped += 1
            continue
        area = annotation.get("area", (box[2] - box[0]) * (box[3] - box[1]))
        if not isinstance(area, (int, float)) or not math.isfinite(area) or area < 0:
            raise ValueError("Annotation id %r has an invalid area %r" % (ann_id, area))
        xmin.append(box[0] / width)
        ymin.append(box[1] / height)
        xmax.append(box[2] / width)
        ymax.append(box[3] / height)
        labels.append(int(category_id))
        texts.append(category_index[category_id].encode("utf8"))
        is_crowd.append(int(crowd))
        areas.append(float(area))
        if include_masks:
            masks.append(_instance_mask_png(annotation, height, width))

    feature = {
        "image/height": _int64_feature([height]),
        "image/width": _int64_feature([width]),
        "image/filename": _bytes_feature([image["file_name"].encode("utf8")]),
        "image/source_id": _bytes_feature([str(image["id"]).encode("utf8")]),
        "image/key/sha256": _bytes_feature([hashlib.sha256(encoded).hexdigest().encode("utf8")]),
        "image/encoded": _bytes_feature([encoded]),
        "image/format": _bytes_feature([b"jpeg"]),
        "image/object/bbox/xmin": _float_feature(xmin),
        "image/object/bbox/xmax": _float_feature(xmax),
        "image/object/bbox/ymin": _float_feature(ymin),
        "image/object/bbox/ymax": _float_feature(ymax),
        "image/object/class/text": _bytes_feature(texts),
        "image/object/class/label": _int64_feature(labels),
        "image/object/is_crowd": _int64_feature(is_crowd),
        "image/object/area": _float_feature(areas),
    }
    if include_masks:
        feature["image/object/mask"] = _bytes_feature(masks)
    return tf.train.Example(features=tf.train.Features(feature=feature)), num_skipped


def _serialize_image(image_and_annotations, image_dir, category_index, include_masks):
    """Pool worker: returns (serialized tf.Example, num_skipped annotations)."""
    image, annotations = image_and_annotations
    example, num_skipped = create_tf_example(
        image, annotations, image_dir, category_index, include_masks
    )
    # Sorted map keys: protobuf otherwise orders the feature map differently in each process.
    return example.SerializeToString(deterministic=True), num_skipped


def create_tf_record(
    image_dir,
    object_annotations_file,
    output_file_prefix,
    num_shards,
    include_masks=False,
    num_workers=0,
    log_every_n=1000,
):
    """Converts a COCO dataset to `num_shards` TFRecord files.

    Args:
      image_dir: directory of the images named in the JSON 'file_name' fields.
      object_annotations_file: COCO instances JSON (or an image_info JSON without annotations).
      output_file_prefix: output path prefix; parent directories are created.
      num_shards: number of output files.
      include_masks: write per-instance PNG masks rasterized from polygons / RLE.
      num_workers: worker processes for image encoding and mask rasterization; 0 or 1 runs in
        this process. The output does not depend on it.
      log_every_n: log progress every this many images.

    Returns:
      The list of written file paths, `P-0000i-of-0000N.tfrecord`.

    Raises:
      FileNotFoundError / ValueError on broken input (see the module docstring). Partially
      written output files are removed.
    """
    if num_shards < 1:
        raise ValueError("num_shards must be >= 1, got %r" % num_shards)
    images, annotations_by_image_id, category_index = load_coco_annotations(object_annotations_file)
    paths = shard_paths(output_file_prefix, num_shards)
    output_dir = os.path.dirname(output_file_prefix)
    if output_dir:
        tf.io.gfile.makedirs(output_dir)
    tasks = ((image, annotations_by_image_id.get(image["id"], [])) for image in images)
    serialize = functools.partial(
        _serialize_image,
        image_dir=image_dir,
        category_index=category_index,
        include_masks=include_masks,
    )
    total = len(images)
    logging.info(
        "Converting %d images from %s into %d shards at %s",
        total,
        object_annotations_file,
        num_shards,
        output_file_prefix,
    )
    num_skipped = 0
    try:
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(tf.io.TFRecordWriter(p)) for p in paths]
            if num_workers and num_workers > 1:
                # 'spawn' because forking a process that has started TensorFlow's threads can deadlock.
                pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(num_workers))
                results = pool.imap(serialize, tasks, chunksize=16)
            else:
                results = map(serialize, tasks)
            for index, (serialized, skipped) in enumerate(results):
                writers[index % num_shards].write(serialized)
                num_skipped += skipped
                if (index + 1) % log_every_n == 0 or index + 1 == total:
                    logging.info("Converted image %d of %d", index + 1, total)
    except BaseException:
        for path in paths:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        raise
    logging.info(
        "Wrote %d images to %d shards; dropped %d annotations with empty clipped boxes",
        total,
        num_shards,
        num_skipped,
    )
    return paths


def _define_flags():
    flags.DEFINE_string("image_dir", None, "Directory containing the images.")
    flags.DEFINE_string("object_annotations_file", None, "COCO instances JSON file.")
    flags.DEFINE_string("output_file_prefix", None, "Output path prefix of the TFRecord shards.")
    flags.DEFINE_integer("num_shards", 32, "Number of output shards.")
    flags.DEFINE_boolean("include_masks", False, "Write per-instance PNG masks.")
    flags.DEFINE_integer("num_workers", 0, "Worker processes (0: run in this process).")
    flags.DEFINE_integer("log_every_n", 1000, "Log progress every this many images.")
    for name in ("image_dir", "object_annotations_file", "output_file_prefix"):
        flags.mark_flag_as_required(name)


def main(argv):
    del argv
    f = flags.FLAGS
    create_tf_record(
        f.image_dir,
        f.object_annotations_file,
        f.output_file_prefix,
        f.num_shards,
        include_masks=f.include_masks,
        num_workers=f.num_workers,
        log_every_n=f.log_every_n,
    )


if __name__ == "__main__":
    _define_flags()
    app.run(main)
