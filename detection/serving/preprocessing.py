"""One decoded image -> the network input, with the ops evaluation uses (one per model kind).

Each function takes a uint8 image `[h, w, 3]` of any size and returns
`(image [H, W, 3] float32, image_info [4, 2] float32)` for a network input of `(H, W)`, with
`image_info` as in docs/CONVENTIONS.md: a point in original pixels maps to the network input as
`point * scale - offset`. The evaluation parsers call the same `preprocess_ops` functions with
the same arguments, which is what makes an exported model reproduce evaluation.
"""

import tensorflow as tf

from detection.dataloader import preprocess_ops
from detection.dataloader.classification_parser import CROP_PADDING


def detection_image(image, network_size):
    """Detection / segmentation: normalize, resize keeping the aspect ratio, pad bottom/right.

    Args:
      image: [h, w, 3] uint8.
      network_size: (H, W) static ints.

    Returns:
      (image [H, W, 3] float32, image_info [4, 2]).
    """
    normalized = preprocess_ops.normalize_image(image)
    resized, image_info = preprocess_ops.resize_and_crop_image(normalized, network_size)
    resized.set_shape([int(network_size[0]), int(network_size[1]), 3])
    return resized, image_info


def classification_image(image, network_size):
    """Classification: the evaluation centre crop, resized to the network size, normalized.

    The crop and resize become an `image_info` whose scale and offset map original pixels into
    the network input (`offset = crop_offset * scale`); the valid extent is the whole input.

    Args:
      image: [h, w, 3] uint8.
      network_size: (H, W) static ints.

    Returns:
      (image [H, W, 3] float32, image_info [4, 2]).
    """
    image_size = tf.shape(image)[:2]
    offset, size = preprocess_ops.center_crop_window(image_size, network_size, CROP_PADDING)
    cropped = preprocess_ops.crop_and_resize_image(image, offset, size, network_size)
    normalized = preprocess_ops.normalize_image(cropped)
    out_size = tf.constant([float(network_size[0]), float(network_size[1])])
    scale = out_size / tf.cast(size, tf.float32)
    image_info = tf.stack(
        [tf.cast(image_size, tf.float32), out_size, scale, tf.cast(offset, tf.float32) * scale]
    )
    return normalized, image_info


def raw_image_info(raw_size, batch_size):
    """`image_info [b, 4, 2]` of already-preprocessed images: identity scale, no offset.

    Args:
      raw_size: [2] float32 (h, w) of the raw images; they are the "original" images.
      batch_size: scalar int32 tensor.
    """
    raw_size = tf.cast(raw_size, tf.float32)
    info = tf.stack([raw_size, raw_size, tf.ones([2]), tf.zeros([2])])
    return tf.tile(info[tf.newaxis], [batch_size, 1, 1])
