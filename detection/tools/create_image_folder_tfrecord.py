"""Converts an image-folder tree (`class_name/xxx.jpg`) to ImageNet-style classification
TFRecords and a label map.

    python -m detection.tools.create_image_folder_tfrecord --image_dir=train \
        --output_file_prefix=tfrecords/train --num_shards=16 [--label_map_file=labels.txt]

Every subdirectory of `--image_dir` is a class; its image files (by extension, in
subdirectories too) are the class's examples; other files are skipped (counted in the log).

Label map: a text file of `label:name` lines (the format of COCO's label map CSV). Without
`--label_map_file`, the classes are the sorted subdirectory names with labels 1..N (label 0 is
left for the background class, as in ImageNet's 1001-class records, so `num_classes` is N + 1)
and the map is written to `<output_file_prefix>_label_map.txt`. Convert a validation split with
the training split's map (`--label_map_file=tfrecords/train_label_map.txt`) so that labels
agree; a subdirectory missing from a given map is an error.

Records: `image/encoded` (RGB JPEG; others re-encoded), `image/format`, `image/height`,
`image/width`, `image/filename` (path under image_dir), `image/class/label`,
`image/class/text` (the class name). Examples are shuffled with a fixed seed and dealt to the
shards in turn, so every shard mixes the classes and the output is the same on every run.

Bad input (missing directory, no class or image, undecodable image, bad label map) ends the
process with exit code 2 and one line on stderr naming it.
"""

import contextlib
import logging
import os
import random
import sys

import tensorflow as tf

from detection.core import exit_codes
from detection.main_lib import OneLineParser, UsageError
from detection.tools import image_files

PROG = "create_image_folder_tfrecord"
_log = logging.getLogger(__name__)


def shard_paths(output_file_prefix, num_shards):
    """`P-00000-of-0000N.tfrecord`, one per shard."""
    return [f"{output_file_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def read_label_map(path):
    """`{name: label}` from a file of `label:name` lines (blank lines skipped).

    Raises:
      FileNotFoundError, ValueError: the message names the file and line.
    """
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"label map file not found: {path}")
    label_map = {}
    with tf.io.gfile.GFile(path, "r") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            label, sep, name = line.strip().partition(":")
            if not sep or not label.strip().isdigit() or not name.strip():
                raise ValueError(f"{path}:{number}: expected 'label:name', got {line.strip()!r}")
            name = name.strip()
            if name in label_map or int(label) in label_map.values():
                raise ValueError(f"{path}:{number}: duplicate class or label in {line.strip()!r}")
            label_map[name] = int(label)
    if not label_map:
        raise ValueError(f"label map file {path} has no 'label:name' line")
    return label_map


def write_label_map(label_map, path):
    """Writes `{name: label}` as `label:name` lines, by label."""
    with tf.io.gfile.GFile(path, "w") as f:
        for name, label in sorted(label_map.items(), key=lambda item: item[1]):
            f.write(f"{label}:{name}\n")


def list_examples(image_dir, label_map=None):
    """`(examples, label_map)`: `[(relative path, class name)]` sorted, and the label map.

    Raises:
      FileNotFoundError, ValueError: no such directory, no class subdirectory or no image, or
        a subdirectory that the given label map lacks.
    """
    if not tf.io.gfile.isdir(image_dir):
        raise FileNotFoundError(f"--image_dir {image_dir} is not a directory")
    classes = sorted(
        name
        for name in tf.io.gfile.listdir(image_dir)
        if tf.io.gfile.isdir(os.path.join(image_dir, name))
    )
    classes = [name.rstrip("/") for name in classes]
    if not classes:
        raise ValueError(f"--image_dir {image_dir} has no class subdirectory")
    if label_map is None:
        label_map = {name: label for label, name in enumerate(classes, 1)}
    unknown = [name for name in classes if name not in label_map]
    if unknown:
        raise ValueError(f"class directories {unknown} of {image_dir} are not in the label map")
    examples, skipped = [], 0
    for name in classes:
        for root, _, files in tf.io.gfile.walk(os.path.join(image_dir, name)):
            for file_name in sorted(files):
                path = os.path.relpath(os.path.join(root, file_name), image_dir)
                if image_files.is_image_file(file_name):
                    examples.append((path, name))
                else:
                    skipped += 1
    if not examples:
        raise ValueError(f"no image file under the class directories of {image_dir}")
    if skipped:
        _log.info("skipped %d files without an image extension", skipped)
    return sorted(examples), label_map


def create_example(image_dir, relative_path, class_name, label):
    """The tf.Example of one image file (see the module docstring for the keys)."""
    encoded, height, width = image_files.read_rgb_jpeg(os.path.join(image_dir, relative_path))
    feature = {
        "image/encoded": image_files.bytes_feature([encoded]),
        "image/format": image_files.bytes_feature([b"jpeg"]),
        "image/height": image_files.int64_feature([height]),
        "image/width": image_files.int64_feature([width]),
        "image/filename": image_files.bytes_feature([relative_path.encode()]),
        "image/class/label": image_files.int64_feature([label]),
        "image/class/text": image_files.bytes_feature([class_name.encode()]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def create_tf_records(image_dir, output_file_prefix, num_shards, label_map_file=None, seed=0):
    """Converts the tree; returns `(shard paths, label map path)`.

    Raises:
      FileNotFoundError, ValueError: bad input (named); partial outputs are removed.
    """
    if num_shards < 1:
        raise ValueError(f"--num_shards must be >= 1, got {num_shards}")
    label_map = read_label_map(label_map_file) if label_map_file else None
    examples, label_map = list_examples(image_dir, label_map)
    random.Random(seed).shuffle(examples)
    output_dir = os.path.dirname(output_file_prefix)
    if output_dir:
        tf.io.gfile.makedirs(output_dir)
    paths = shard_paths(output_file_prefix, num_shards)
    try:
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(tf.io.TFRecordWriter(p)) for p in paths]
            for index, (path, name) in enumerate(examples):
                example = create_example(image_dir, path, name, label_map[name])
                writers[index % num_shards].write(example.SerializeToString(deterministic=True))
    except BaseException:
        for path in paths:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        raise
    if label_map_file is None:
        label_map_file = f"{output_file_prefix}_label_map.txt"
        write_label_map(label_map, label_map_file)
    _log.info(
        "wrote %d images of %d classes to %d shards", len(examples), len(label_map), num_shards
    )
    return paths, label_map_file


def build_parser():
    parser = OneLineParser(prog=f"python -m detection.tools.{PROG}", allow_abbrev=False)
    parser.add_argument("--image_dir", required=True, help="root of the class_name/ directories")
    parser.add_argument("--output_file_prefix", required=True, help="output path prefix")
    parser.add_argument("--num_shards", type=int, default=1)
    parser.add_argument("--label_map_file", default=None, help="an existing label:name map")
    return parser


def main(argv=None):
    """Converts; returns the exit code (2 on bad input, with one line on stderr)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        paths, label_map_file = create_tf_records(
            args.image_dir, args.output_file_prefix, args.num_shards, args.label_map_file
        )
    except (UsageError, ValueError, FileNotFoundError) as error:
        print(f"{PROG}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return exit_codes.USAGE
    print(f"{len(paths)} TFRecord files at {args.output_file_prefix}-*; label map {label_map_file}")
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
