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
        flipped = (
            tf.reverse(image, axis=[1]),
            tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1),
        )
        return flipped if masks is None else flipped + (tf.reverse(masks, axis=[2]),)

    outputs = tf.cond(do_flip, flip, lambda: tensors)
    return (outputs[0], outputs[1], None if masks is None else outputs[2])


def resize_and_crop_image(
    image,
    output_size,
    aug_scale_min=1.0,
    aug_scale_max=1.0,
    seed=None,
    method=tf.image.ResizeMethod.BILINEAR,
):
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
    cropped = scaled[
        offset_int[0] : offset_int[0] + out_h, offset_int[1] : offset_int[1] + out_w, :
    ]
    padded = tf.image.pad_to_bounding_box(cropped, 0, 0, out_h, out_w)
    valid_size = tf.minimum(scaled_size - offset, tf.constant([out_h, out_w], tf.float32))
    image_info = tf.stack([original_size, valid_size, image_scale, offset])
    return padded, image_info


def resize_and_crop_label_map(label_map, image_info, output_size, pad_value):
    """Gives a label map the geometry `resize_and_crop_image` gave its image.

    Nearest-neighbour resize (class ids must not be blended) to the scaled size recorded in
    `image_info`, the same crop offset, and `pad_value` wherever the image was padded.

    Args:
      label_map: [h, w] integer class ids, the size of the original image.
      image_info: [4, 2] float32 returned with the resized image.
      output_size: (out_h, out_w) static ints.
      pad_value: the class id of padding (the ignore label).

    Returns:
      [out_h, out_w] int32.
    """
    out_h, out_w = int(output_size[0]), int(output_size[1])
    scaled_size = tf.cast(tf.round(image_info[0] * image_info[2]), tf.int32)
    offset = tf.cast(image_info[3], tf.int32)
    resized = tf.image.resize(
        tf.cast(label_map, tf.int32)[:, :, None], scaled_size, method="nearest"
    )[:, :, 0]
    cropped = resized[offset[0] : offset[0] + out_h, offset[1] : offset[1] + out_w]
    size = tf.shape(cropped)
    padded = tf.pad(
        cropped, [[0, out_h - size[0]], [0, out_w - size[1]]], constant_values=pad_value
    )
    padded.set_shape([out_h, out_w])
    return padded


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
        count,
        size,
        message=f"more {name} than max_num_instances={size}; raise the parser's max_num_instances",
    )
    with tf.control_dependencies([check]):
        paddings = [[0, size - count]] + [[0, 0]] * (len(values.shape) - 1)
        padded = tf.pad(values, paddings, constant_values=pad_value)
    padded.set_shape([size] + values.shape.as_list()[1:])
    return padded


def random_crop_window(
    image_size,
    area_range=(0.08, 1.0),
    aspect_ratio_range=(3 / 4, 4 / 3),
    min_object_covered=0.1,
    max_attempts=10,
    seed=None,
):
    """Samples an Inception-style crop window covering a random area and aspect ratio.

    Args:
      image_size: [2] int32 (height, width).
      area_range: (min, max) fraction of the image area the crop covers.
      aspect_ratio_range: (min, max) width / height of the crop.
      min_object_covered, max_attempts: as tf.image.sample_distorted_bounding_box (the
        whole image is the only object).
      seed: optional op seed.

    Returns:
      (offset [2] int32 (y, x), size [2] int32 (h, w)). When no window is found in
      `max_attempts` the whole image is returned.
    """
    whole_image = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])
    image_shape = tf.concat([tf.cast(image_size, tf.int32), [3]], axis=0)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        image_shape,
        bounding_boxes=whole_image,
        seed=0 if seed is None else seed,
        min_object_covered=min_object_covered,
        aspect_ratio_range=aspect_ratio_range,
        area_range=area_range,
        max_attempts=max_attempts,
        use_image_if_no_bounding_boxes=True,
    )
    return begin[:2], size[:2]


def center_crop_window(image_size, output_size, crop_padding=32):
    """The centred square crop of ImageNet evaluation.

    The crop side is `min(h, w) * out / (out + crop_padding)` with `out = min(output_size)`,
    so that after resizing to `output_size` the image looks as if it had been resized to
    `out + crop_padding` and centre-cropped to `out`.

    Args:
      image_size: [2] int32 (height, width).
      output_size: (out_h, out_w) static ints.
      crop_padding: int >= 0.

    Returns:
      (offset [2] int32 (y, x), size [2] int32 (side, side)).
    """
    image_size = tf.cast(image_size, tf.int32)
    out = float(min(int(output_size[0]), int(output_size[1])))
    side = tf.cast(
        out / (out + crop_padding) * tf.cast(tf.reduce_min(image_size), tf.float32), tf.int32
    )
    side = tf.maximum(side, 1)
    offset = (image_size - side + 1) // 2
    return offset, tf.stack([side, side])


def crop_and_resize_image(image, offset, size, output_size, method=tf.image.ResizeMethod.BILINEAR):
    """Crops `image[y:y+h, x:x+w]` and resizes it to `output_size` (aspect not kept).

    Args:
      image: [h, w, c].
      offset: [2] int32 (y, x); size: [2] int32 (crop_h, crop_w).
      output_size: (out_h, out_w) static ints.

    Returns:
      [out_h, out_w, c] float32.
    """
    out_h, out_w = int(output_size[0]), int(output_size[1])
    cropped = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([size, [-1]], 0))
    resized = tf.image.resize(cropped, [out_h, out_w], method=method)
    resized.set_shape([out_h, out_w, image.shape[-1]])
    return resized


def _nearest_indices(num_out, num_in, step, start):
    """Input pixel under each output pixel centre: floor((i + 0.5) * step + start).

    Returns:
      (indices [num_out] int32 clipped into [0, num_in), inside [num_out] bool).
    """
    centres = (tf.range(num_out, dtype=tf.float32) + 0.5) * step + start
    indices = tf.cast(tf.floor(centres), tf.int32)
    inside = (indices >= 0) & (indices < num_in)
    return tf.clip_by_value(indices, 0, tf.maximum(num_in - 1, 0)), inside


def _resample_nearest(maps, out_size, steps, starts, fill_value):
    """`maps` [..., h, w] sampled at an axis-aligned grid of `out_size`, `fill_value` outside."""
    in_size = tf.shape(maps)[-2:]
    rows, rows_inside = _nearest_indices(out_size[0], in_size[0], steps[0], starts[0])
    cols, cols_inside = _nearest_indices(out_size[1], in_size[1], steps[1], starts[1])
    sampled = tf.gather(tf.gather(maps, rows, axis=-2), cols, axis=-1)
    inside = rows_inside[:, None] & cols_inside[None, :]
    return tf.where(inside, sampled, tf.cast(fill_value, maps.dtype))


def masks_to_network_input(maps, image_info, output_size, fill_value=0):
    """Gives maps of the original image the geometry `resize_and_crop_image` gave the image.

    Nearest neighbour (ids and binary masks must not be blended): network-input pixel
    (i, j) takes the original pixel under its centre, `((i, j) + 0.5 + offset) / scale`;
    pixels with no original pixel under them (padding) get `fill_value`.

    Args:
      maps: [..., h, w] (masks [n, h, w], or one [h, w] map) at the original resolution.
      image_info: [4, 2] float32 returned with the resized image.
      output_size: (out_h, out_w) static ints.
      fill_value: value of the padding.

    Returns:
      [..., out_h, out_w], the dtype of `maps`.
    """
    maps = tf.convert_to_tensor(maps)
    scale, offset = image_info[2], image_info[3]
    out_h, out_w = int(output_size[0]), int(output_size[1])
    resampled = _resample_nearest(maps, (out_h, out_w), 1.0 / scale, offset / scale, fill_value)
    resampled.set_shape(maps.shape[:-2].concatenate([out_h, out_w]))
    return resampled


def masks_to_original_pixels(maps, image_info, fill_value=0):
    """Inverse of `masks_to_network_input`: network-input maps at the original resolution.

    Original pixel (y, x) takes the network-input pixel under its centre,
    `((y, x) + 0.5) * scale - offset`; pixels cropped away by the scale jitter get
    `fill_value`.

    Args:
      maps: [..., out_h, out_w] in network-input pixels.
      image_info: [4, 2] float32 (its first row is the original size).

    Returns:
      [..., original_h, original_w], the dtype of `maps`.
    """
    maps = tf.convert_to_tensor(maps)
    scale, offset = image_info[2], image_info[3]
    original_size = tf.cast(tf.round(image_info[0]), tf.int32)
    return _resample_nearest(maps, original_size, scale, -offset, fill_value)
