"""Reading a COCO annotation JSON file, with every malformed part named.

The converter reads 'images' (id, file_name, height, width), 'categories' (id, name) and
'annotations' (image_id, category_id, bbox, ...; absent in test-set files). A file that is not
UTF-8 JSON, not COCO's layout, or an entry missing its keys raises ValueError naming the file
and the entry, before any image is read.
"""

import collections
import json

import tensorflow as tf


def short_repr(value, limit=80):
    """repr(value), cut to `limit` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_coco_annotations(object_annotations_file):
    """Reads a COCO JSON file.

    Returns:
      (images, annotations_by_image_id, category_index): the 'images' list in file order, a dict
      image id -> list of annotation dicts (file order), and a dict category id -> name.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: not JSON, not COCO's layout (the message names the file and the entry),
        duplicate image ids, or an annotation whose image id is not in 'images'.
    """
    groundtruth = _read_json(object_annotations_file)
    images = _entries(groundtruth, "images", object_annotations_file, required=True)
    image_ids = set()
    for i, image in enumerate(images):
        _check_image_entry(image, i, object_annotations_file)
        if image["id"] in image_ids:
            raise ValueError("Duplicate image id %r in %s" % (image["id"], object_annotations_file))
        image_ids.add(image["id"])
    category_index = {}
    for i, category in enumerate(_entries(groundtruth, "categories", object_annotations_file)):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise ValueError(
                "%s: categories[%d] needs an 'id' and a 'name', got %s"
                % (object_annotations_file, i, short_repr(category))
            )
        category_index[category["id"]] = str(category["name"])
    annotations_by_image_id = collections.defaultdict(list)
    # Test-set files (image_info_test*.json) have no 'annotations' key.
    for i, annotation in enumerate(_entries(groundtruth, "annotations", object_annotations_file)):
        if not isinstance(annotation, dict):
            raise ValueError(
                "%s: annotations[%d] is not an object: %s"
                % (object_annotations_file, i, short_repr(annotation))
            )
        if annotation.get("image_id") not in image_ids:
            raise ValueError(
                "Annotation id %r in %s refers to unknown image id %r"
                % (annotation.get("id"), object_annotations_file, annotation.get("image_id"))
            )
        annotations_by_image_id[annotation["image_id"]].append(annotation)
    return images, annotations_by_image_id, category_index


def _read_json(path):
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError("Annotation file not found: %s" % path)
    if tf.io.gfile.isdir(path):
        raise ValueError("Annotation file %s is a directory" % path)
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError("%s is not UTF-8 text (byte %d)" % (path, error.start)) from None
    except json.JSONDecodeError as error:
        raise ValueError(
            "%s is not valid JSON: %s (line %d, column %d)"
            % (path, error.msg, error.lineno, error.colno)
        ) from None
    except RecursionError:
        raise ValueError("%s is not valid JSON: nested too deeply" % path) from None


def _entries(groundtruth, key, path, required=False):
    if not isinstance(groundtruth, dict):
        raise ValueError(
            "%s must hold a COCO JSON object, got %s" % (path, type(groundtruth).__name__)
        )
    if key not in groundtruth:
        if required:
            raise ValueError("%s has no '%s' list (not a COCO annotation file?)" % (path, key))
        return []
    if not isinstance(groundtruth[key], list):
        raise ValueError(
            "%s: '%s' must be a list, got %s" % (path, key, short_repr(groundtruth[key]))
        )
    return groundtruth[key]


def _check_image_entry(image, index, path):
    ok = isinstance(image, dict) and all(k in image for k in ("id", "file_name", "height", "width"))
    if ok:
        size = (image["height"], image["width"])
        ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ok = ok and isinstance(image["file_name"], str) and bool(image["file_name"])
        ok = ok and isinstance(image["id"], (int, str)) and not isinstance(image["id"], bool)
    if not ok:
        raise ValueError(
            "%s: images[%d] needs an 'id', a 'file_name' and positive integer 'height' and "
            "'width', got %s" % (path, index, short_repr(image))
        )
