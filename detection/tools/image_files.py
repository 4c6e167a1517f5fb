"""Reading image files for the TFRecord converters: RGB JPEG bytes and single-channel label PNGs.

Policies shared by `create_image_folder_tfrecord` and `create_segmentation_tfrecord`: an RGB
JPEG is copied byte for byte; any other image (grayscale, CMYK, palette, PNG...) is re-encoded
as an RGB JPEG of quality 95. A missing or undecodable file raises an error naming it.
"""

import io
import os

from PIL import Image
import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def is_image_file(name):
    """Whether a file name has one of IMAGE_EXTENSIONS (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _open(path):
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"image file not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:  # PIL raises several unrelated exception types.
        raise ValueError(f"cannot decode image file {path}: {error}") from None
    return data, image


def read_rgb_jpeg(path):
    """Returns `(jpeg_bytes, height, width)` of an image file as an RGB JPEG.

    Raises:
      FileNotFoundError, ValueError: the message names the file.
    """
    data, image = _open(path)
    width, height = image.size
    if image.format != "JPEG" or image.mode != "RGB":
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
        data = buffer.getvalue()
    return data, height, width


def read_label_png(path):
    """Returns `(png_bytes, label_map)` of a single-channel label image.

    The pixel values are the class ids: 8-bit grayscale ('L') or palette ('P', as PASCAL VOC's
    SegmentationClass files, whose indices are the classes) images are accepted; the PNG is
    re-encoded as 8-bit grayscale so that decoders need no palette.

    Returns:
      (bytes, uint8 [h, w] array).

    Raises:
      FileNotFoundError, ValueError: missing, undecodable or multi-channel file (named).
    """
    _, image = _open(path)
    if image.mode not in ("L", "P"):
        raise ValueError(
            f"label image {path} has mode {image.mode!r}; expected one 8-bit channel of class "
            "ids (mode 'L' or palette 'P')"
        )
    label_map = np.asarray(image, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(label_map).save(buffer, format="PNG")
    return buffer.getvalue(), label_map


def bytes_feature(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))
