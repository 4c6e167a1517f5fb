"""Hand-made detection tf.Examples for parser tests (importable from any test, as
numpy_references): an exact image (PNG, lossless) with given boxes, classes and masks."""

import io

import numpy as np
import tensorflow as tf
from PIL import Image


def _feature(values):
    if isinstance(values[0], bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if isinstance(values[0], (int, np.integer)):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_example(image, boxes, classes, masks=None, source_id=1, is_crowd=None):
    """A serialized detection tf.Example.

    Args:
      image: [h, w, 3] uint8, stored as PNG so that decoding gives the same pixels.
      boxes: [n, 4] yxyx in pixels (stored normalized).
      classes: [n] ints.
      masks: optional [n, h, w] 0/1 arrays (stored as PNGs).
      source_id: int.
      is_crowd: optional [n] 0/1.

    Returns:
      [] tf.string tensor.
    """
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    feature = {
        "image/encoded": [_png(np.asarray(image, np.uint8))],
        "image/source_id": [str(source_id).encode()],
        "image/height": [height],
        "image/width": [width],
    }
    if len(boxes):
        feature.update(
            {
                "image/object/bbox/ymin": list(boxes[:, 0] / height),
                "image/object/bbox/xmin": list(boxes[:, 1] / width),
                "image/object/bbox/ymax": list(boxes[:, 2] / height),
                "image/object/bbox/xmax": list(boxes[:, 3] / width),
                "image/object/class/label": list(classes),
            }
        )
        if is_crowd is not None:
            feature["image/object/is_crowd"] = list(is_crowd)
        if masks is not None:
            feature["image/object/mask"] = [_png(np.asarray(m, np.uint8)) for m in masks]
    example = tf.train.Example(
        features=tf.train.Features(feature={k: _feature(v) for k, v in feature.items()})
    )
    return tf.constant(example.SerializeToString())


def rectangle_mask(height, width, box):
    """[height, width] uint8 mask, 1 on the pixels of the integer box (ymin, xmin, ymax, xmax)."""
    mask = np.zeros([height, width], np.uint8)
    mask[box[0] : box[2], box[1] : box[3]] = 1
    return mask
