"""Converts images and their semantic label maps (PASCAL VOC style) to segmentation TFRecords.

    python -m detection.tools.create_segmentation_tfrecord --image_dir=JPEGImages \
        --label_dir=SegmentationClass --output_file_prefix=tfrecords/train --num_shards=8 \
        [--file_list=ImageSets/Segmentation/train.txt]

Each image `<stem>.<ext>` of `--image_dir` (or each stem listed in `--file_list`, one per line)
pairs with the label image `<stem>.png` of `--label_dir`: one 8-bit channel whose values are
the class ids (grayscale, or palette indices as VOC's files), 255 usually meaning "unlabelled"
(`segmentation_parser.ignore_label`), of the image's size.

Records: `image/encoded` (RGB JPEG; others re-encoded), `image/format`, `image/height`,
`image/width`, `image/filename`, `image/source_id` (the example's index, as a string),
`image/segmentation/class/encoded` (8-bit grayscale PNG), `image/segmentation/class/format`.
Examples go to the shards in turn, in sorted stem order (file-list order with `--file_list`).

Bad input (missing directory or label file, size mismatch, multi-channel label image) ends the
process with exit code 2 and one line on stderr naming the file.
"""

import contextlib
import logging
import os
import sys

import tensorflow as tf

from detection.core import exit_codes
from detection.main_lib import OneLineParser, UsageError
from detection.tools import image_files
from detection.tools.create_image_folder_tfrecord import shard_paths

PROG = "create_segmentation_tfrecord"
_log = logging.getLogger(__name__)


def list_pairs(image_dir, label_dir, file_list=None):
    """`[(image path, label path)]`, sorted by stem (or in `file_list` order).

    Raises:
      FileNotFoundError, ValueError: a missing directory, image or label file, or no image.
    """
    for flag, directory in (("--image_dir", image_dir), ("--label_dir", label_dir)):
        if not tf.io.gfile.isdir(directory):
            raise FileNotFoundError(f"{flag} {directory} is not a directory")
    images = {}
    for name in sorted(tf.io.gfile.listdir(image_dir)):
        if image_files.is_image_file(name):
            stem = os.path.splitext(name)[0]
            if stem in images:
                raise ValueError(
                    f"two images named {stem!r} in {image_dir}: {images[stem]}, {name}"
                )
            images[stem] = name
    if file_list:
        with tf.io.gfile.GFile(file_list, "r") as f:
            stems = [line.strip() for line in f if line.strip()]
        missing = [stem for stem in stems if stem not in images]
        if missing:
            raise FileNotFoundError(
                f"no image for {missing[0]!r} (from {file_list}) in {image_dir}"
            )
    else:
        stems = sorted(images)
    if not stems:
        raise ValueError(f"no image file in {image_dir}")
    pairs = []
    for stem in stems:
        label_path = os.path.join(label_dir, stem + ".png")
        if not tf.io.gfile.exists(label_path):
            raise FileNotFoundError(f"label file not found: {label_path}")
        pairs.append((os.path.join(image_dir, images[stem]), label_path))
    return pairs


def create_example(image_path, label_path, source_id):
    """The tf.Example of one image and its label map (keys in the module docstring)."""
    encoded, height, width = image_files.read_rgb_jpeg(image_path)
    label_png, label_map = image_files.read_label_png(label_path)
    if label_map.shape != (height, width):
        raise ValueError(
            f"label image {label_path} is {label_map.shape[0]}x{label_map.shape[1]} but "
            f"{image_path} is {height}x{width} (h x w)"
        )
    feature = {
        "image/encoded": image_files.bytes_feature([encoded]),
        "image/format": image_files.bytes_feature([b"jpeg"]),
        "image/height": image_files.int64_feature([height]),
        "image/width": image_files.int64_feature([width]),
        "image/filename": image_files.bytes_feature([os.path.basename(image_path).encode()]),
        "image/source_id": image_files.bytes_feature([str(source_id).encode()]),
        "image/segmentation/class/encoded": image_files.bytes_feature([label_png]),
        "image/segmentation/class/format": image_files.bytes_feature([b"png"]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def create_tf_records(image_dir, label_dir, output_file_prefix, num_shards, file_list=None):
    """Converts the pairs; returns the shard paths.

    Raises:
      FileNotFoundError, ValueError: bad input (named); partial outputs are removed.
    """
    if num_shards < 1:
        raise ValueError(f"--num_shards must be >= 1, got {num_shards}")
    pairs = list_pairs(image_dir, label_dir, file_list)
    output_dir = os.path.dirname(output_file_prefix)
    if output_dir:
        tf.io.gfile.makedirs(output_dir)
    paths = shard_paths(output_file_prefix, num_shards)
    try:
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(tf.io.TFRecordWriter(p)) for p in paths]
            for index, (image_path, label_path) in enumerate(pairs):
                example = create_example(image_path, label_path, index)
                writers[index % num_shards].write(example.SerializeToString(deterministic=True))
    except BaseException:
        for path in paths:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        raise
    _log.info("wrote %d images with label maps to %d shards", len(pairs), num_shards)
    return paths


def build_parser():
    parser = OneLineParser(prog=f"python -m detection.tools.{PROG}", allow_abbrev=False)
    parser.add_argument("--image_dir", required=True)
    parser.add_argument("--label_dir", required=True, help="<stem>.png label images")
    parser.add_argument("--output_file_prefix", required=True)
    parser.add_argument("--num_shards", type=int, default=1)
    parser.add_argument("--file_list", default=None, help="optional file of stems to convert")
    return parser


def main(argv=None):
    """Converts; returns the exit code (2 on bad input, with one line on stderr)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        paths = create_tf_records(
            args.image_dir, args.label_dir, args.output_file_prefix, args.num_shards, args.file_list
        )
    except (UsageError, ValueError, FileNotFoundError) as error:
        print(f"{PROG}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return exit_codes.USAGE
    print(f"{len(paths)} TFRecord files at {args.output_file_prefix}-*")
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
