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

Bad flags or input end the process with exit code 2 and one line on stderr (`detection.cli`).
"""

import argparse
import sys

from detection import cli

if __name__ in ("__main__", "__mp_main__"):  # The command, or one of its spawned workers.
    # Before the imports below load TensorFlow, which prints start-up lines on stderr.
    cli.quiet_tensorflow()

import contextlib  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402
from pycocotools import mask as mask_api  # noqa: E402

from detection.tools.coco_annotations import load_coco_annotations  # noqa: E402

_log = logging.getLogger(__name__)
PROG = "create_coco_tfrecord"


def shard_paths(output_file_prefix, num_shards):
    """Returns the output file names `P-00000-of-0000N.tfrecord`, one per shard."""
    return [
        "%s-%05d-of-%05d.tfrecord" % (output_file_prefix, i, num_shards) for i in range(num_shards)
    ]


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
        reason = "not a known image format" if isinstance(e, UnidentifiedImageError) else e
        raise ValueError("Cannot decode image file %s: %s" % (image_path, reason)) from e
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
        try:
            known = category_id in category_index
        except TypeError:  # An unhashable id (a list...).
            known = False
        if not known:
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
    if num_shards > len(images):
        # An empty shard is a 0-byte file, which input pipelines refuse.
        raise ValueError(
            "num_shards=%d but %s has %d images: every shard needs at least one (use "
            "--num_shards <= %d)" % (num_shards, object_annotations_file, len(images), len(images))
        )
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
    _log.info(
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
                    _log.info("Converted image %d of %d", index + 1, total)
    except BaseException:
        for path in paths:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        raise
    _log.info(
        "Wrote %d images to %d shards; dropped %d annotations with empty clipped boxes",
        total,
        num_shards,
        num_skipped,
    )
    return paths


def boolean(text):
    """argparse type of --include_masks: true/false, yes/no, 1/0."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y"):
        return True
    if value in ("0", "false", "no", "n"):
        return False
    raise ValueError(text)


def build_parser():
    parser = cli.OneLineParser(
        prog=f"python -m detection.tools.{PROG}",
        allow_abbrev=False,
        description="Converts a COCO-format dataset (JSON + images) to sharded TFRecords.",
    )
    parser.add_argument("--image_dir", required=True, help="directory containing the images")
    parser.add_argument("--object_annotations_file", required=True, help="COCO instances JSON")
    parser.add_argument(
        "--output_file_prefix", required=True, help="output path prefix of the TFRecord shards"
    )
    parser.add_argument("--num_shards", type=int, default=32, help="number of output shards")
    parser.add_argument(
        "--include_masks",
        type=boolean,
        nargs="?",
        const=True,
        default=False,
        help="write per-instance PNG masks",
    )
    parser.add_argument(
        "--noinclude_masks", dest="include_masks", action="store_false", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--num_workers", type=int, default=0, help="worker processes (0: run in this process)"
    )
    parser.add_argument(
        "--log_every_n", type=int, default=1000, help="log progress every this many images"
    )
    return parser


def _check_args(args):
    if args.num_shards < 1:
        raise cli.UsageError(f"--num_shards must be >= 1, got {args.num_shards}")
    if args.num_workers < 0:
        raise cli.UsageError(f"--num_workers must be >= 0, got {args.num_workers}")
    if args.log_every_n < 1:
        raise cli.UsageError(f"--log_every_n must be >= 1, got {args.log_every_n}")
    if not tf.io.gfile.isdir(args.image_dir):
        raise cli.UsageError(f"--image_dir={args.image_dir} is not a directory")


def main(argv=None):
    """Converts; returns the exit code (2 with one line on stderr for bad flags or input)."""
    argv = sys.argv[1:] if argv is None else argv
    args = None
    try:
        args = build_parser().parse_args(argv)
        _check_args(args)
        cli.configure_logging()
        create_tf_record(
            args.image_dir,
            args.object_annotations_file,
            args.output_file_prefix,
            args.num_shards,
            include_masks=args.include_masks,
            num_workers=args.num_workers,
            log_every_n=args.log_every_n,
        )
    except (cli.UsageError, ValueError, OSError) as error:
        cli.print_error(PROG, error)
        return cli.EXIT_USAGE
    except tf.errors.OpError as error:
        # Writing the output (a read-only directory, a full disk, a bucket without access).
        target = f"{args.output_file_prefix}-*" if args else "the output"
        cli.print_error(PROG, f"cannot write {target}: {error.message}")
        return cli.EXIT_USAGE
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
