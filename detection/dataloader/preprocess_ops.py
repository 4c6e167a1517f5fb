"""Image and box preprocessing shared by the parsers: normalize, flip, resize-crop-pad.

The single resize convention of the framework: an image is scaled (keeping its aspect
ratio) so that it fits `output_size` times a random jitter factor, randomly cropped back to
`output_size` when larger, and padded at the bottom/right to `output_size`. The bookkeeping
goes into `image_info` (see docs/CONVENTIONS.md):
`[[original_h, original_w], [valid_h, valid_w], [y_scale, x_scale], [y_offset, x_offset]]`,
where `valid_*` is the extent of real image content in the output.
"""

import tensorflow as tf

# ImageNet statistics, as the original framework normalized its inputs.
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def normalize_image(image):
    """uint8 [h, w, 3] -> float32 [h, w, 3] with ImageNet mean/stddev removed."""
    image = tf.cast(image, tf.float32)
    return (image - tf.constant(MEAN_RGB)) / tf.constant(STDDEV_RGB)


def random_horizontal_flip(image, normalized_boxes, masks=None, seed=None):
    """Flips image, normalized boxes and masks together with probability 0.5.

    Args:
      image: [h, w, c].
      normalized_boxes: [n, 4] normalized yxyx.
      masks: optional [n, h, w].

    Returns:
      (image, normalized_boxes, masks) flipped or not.
    """
    do_flip = tf.random.uniform([], seed=seed) > 0.5
    tensors = (image, normalized_boxes) if masks is None else (image, normalized_boxes, masks)

    def flip():
        ymin, xmin, ymax, xmax = tf.unstack(normalized_boxes, axis=-1)
        flipped = (tf.reverse(image, axis=[1]),
                   tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1))
        return flipped if masks is None else flipped + (tf.reverse(masks, axis=[2]),)

    outputs = tf.cond(do_flip, flip, lambda: tensors)
    return (outputs[0], outputs[1], None if masks is None else outputs[2])


def resize_and_crop_image(image, output_size, aug_scale_min=1.0, aug_scale_max=1.0,
                          seed=None, method=tf.image.ResizeMethod.BILINEAR):
    """Resizes keeping aspect ratio (with scale jitter), random-crops and pads.

    Args:
      image: [h, w, c] float32.
      output_size: (out_h, out_w) static ints.
      aug_scale_min, aug_scale_max: jitter range of the target scale; (1, 1) disables the
        jitter and the random crop (evaluation).
      method: resize method.

    Returns:
      image: [out_h, out_w, c] float32, content at the top-left, zero padding elsewhere.
      image_info: [4, 2] float32 (module docstring).
    """
    out_h, out_w = int(output_size[0]), int(output_size[1])
    original_size = tf.cast(tf.shape(image)[:2], tf.float32)
    target_size = tf.constant([out_h, out_w], tf.float32)
    jitter = aug_scale_min != 1.0 or aug_scale_max != 1.0
    if jitter:
        random_scale = tf.random.uniform([], aug_scale_min, aug_scale_max, seed=seed)
        target_size = tf.round(target_size * random_scale)
    scale = tf.reduce_min(target_size / original_size)
    scaled_size = tf.round(original_size * scale)
    image_scale = scaled_size / original_size
    if jitter:
        max_offset = tf.maximum(scaled_size - tf.constant([out_h, out_w], tf.float32), 0.0)
        offset = tf.floor(max_offset * tf.random.uniform([2], 0.0, 1.0, seed=seed))
    else:
        offset = tf.zeros([2], tf.float32)

    scaled = tf.image.resize(image, tf.cast(scaled_size, tf.int32), method=method)
    offset_int = tf.cast(offset, tf.int32)
    cropped = scaled[offset_int[0]:offset_int[0] + out_h, offset_int[1]:offset_int[1] + out_w, :]
    padded = tf.image.pad_to_bounding_box(cropped, 0, 0, out_h, out_w)
    valid_size = tf.minimum(scaled_size - offset, tf.constant([out_h, out_w], tf.float32))
    image_info = tf.stack([original_size, valid_size, image_scale, offset])
    return padded, image_info


def resize_and_crop_boxes(boxes, image_scale, output_size, offset):
    """Maps pixel boxes of the original image into the output image, clipped to it.

    Args:
      boxes: [n, 4] yxyx in original-image pixels.
      image_scale: [2] (y_scale, x_scale).
      output_size: (out_h, out_w).
      offset: [2] (y_offset, x_offset) of the crop.

    Returns:
      [n, 4] yxyx in output pixels, clipped to [0, out_h] x [0, out_w].
    """
    boxes = boxes * tf.tile(image_scale, [2]) - tf.tile(offset, [2])
    limits = tf.cast(tf.tile(tf.reshape(output_size, [2]), [2]), boxes.dtype)
    return tf.clip_by_value(boxes, 0.0, limits)


def non_empty_box_indices(boxes):
    """Indices [k] of boxes with positive height and width."""
    heights = boxes[:, 2] - boxes[:, 0]
    widths = boxes[:, 3] - boxes[:, 1]
    return tf.where(tf.logical_and(heights > 0, widths > 0))[:, 0]


def pad_to_fixed_size(values, size, pad_value, name):
    """Pads the first dimension of `values` to `size` (errors if it is larger).

    Args:
      values: [n, ...] with n <= size.
      size: static int.
      pad_value: value of the padding entries.
      name: what the values are, for the error message.

    Returns:
      [size, ...] tensor.
    """
    count = tf.shape(values)[0]
    check = tf.debugging.assert_less_equal(
        count, size, message=f"more {name} than max_num_instances={size}; raise "
                             "the parser's max_num_instances")
    with tf.control_dependencies([check]):
        paddings = [[0, size - count]] + [[0, 0]] * (len(values.shape) - 1)
        padded = tf.pad(values, paddings, constant_values=pad_value)
    padded.set_shape([size] + values.shape.as_list()[1:])
    return padded
