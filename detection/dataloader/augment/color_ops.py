"""Colour ops of AutoAugment / RandAugment on uint8 RGB images, with PIL's semantics.

Each op takes `image: [h, w, 3] uint8` and returns the same shape and dtype. They reproduce
PIL's `ImageOps` (equalize, autocontrast, posterize, solarize, invert) and `ImageEnhance`
(color, contrast, brightness, sharpness) - the library the policies were designed with -
including its integer grey conversion and truncating blend. The reference TF implementation
of Contrast blended with `num_pixels / 256` instead of the mean grey level (a bug); here it is
the mean, as in PIL. Per-channel maps are applied as 256-entry look-up tables.
"""

import tensorflow as tf

from detection.dataloader.augment import sample as sample_lib


def _lut_indices(image):
    """[h, w, 3] int32 positions of the pixels in three concatenated 256-entry tables."""
    return tf.cast(image, tf.int32) + tf.constant([0, 256, 512], tf.int32)


def _apply_luts(indices, luts):
    """luts: [3, 256] values in [0, 255], one table per channel; indices from _lut_indices."""
    return tf.gather(tf.reshape(tf.cast(luts, tf.uint8), [-1]), indices)


def blend(image1, image2, factor):
    """PIL's Image.blend: image1 + factor * (image2 - image1), clipped and truncated.

    factor 0 gives image1, 1 gives image2; larger values extrapolate away from image1.
    Inputs are uint8 or float32 holding integers (broadcastable); the result is uint8.
    """
    image1 = tf.cast(image1, tf.float32)
    image2 = tf.cast(image2, tf.float32)
    blended = image1 + tf.cast(factor, tf.float32) * (image2 - image1)
    return tf.cast(tf.clip_by_value(blended, 0.0, 255.0), tf.uint8)


def grayscale(image):
    """PIL's RGB -> L conversion (ITU-R 601 weights in 16-bit fixed point): [h, w] float32.

    float32 is exact here: every partial sum is an integer below 2**24.
    """
    rgb = tf.cast(image, tf.float32)
    weighted = rgb[..., 0] * 19595.0 + rgb[..., 1] * 38470.0 + rgb[..., 2] * 7471.0
    return tf.floor((weighted + 32768.0) / 65536.0)


def equalize(image):
    """Histogram equalization of each channel (PIL ImageOps.equalize)."""
    indices = _lut_indices(image)
    histograms = tf.reshape(
        tf.math.bincount(tf.reshape(indices, [-1]), minlength=768, maxlength=768), [3, 256]
    )
    total = tf.reduce_sum(histograms, axis=1)
    # PIL leaves out the count of the brightest level present when choosing the step.
    brightest = 255 - tf.argmax(tf.reverse(histograms, axis=[1]) > 0, axis=1, output_type=tf.int32)
    step = (total - tf.gather(histograms, brightest, batch_dims=1)) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    exclusive_cumsum = tf.cumsum(histograms, axis=1, exclusive=True)
    equalized = tf.minimum((safe_step // 2 + exclusive_cumsum) // safe_step, 255)
    identity = tf.broadcast_to(tf.range(256), [3, 256])
    luts = tf.where(step[:, None] > 0, equalized, identity)
    return _apply_luts(indices, luts)


def autocontrast(image):
    """Stretches each channel to the full [0, 255] range (PIL ImageOps.autocontrast)."""
    pixels = tf.reshape(image, [-1, 3])
    # float64 so that the table matches PIL's double arithmetic at integer boundaries.
    lo = tf.cast(tf.reduce_min(pixels, axis=0), tf.float64)[:, None]
    hi = tf.cast(tf.reduce_max(pixels, axis=0), tf.float64)[:, None]
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    levels = tf.range(256, dtype=tf.float64)[None, :]
    stretched = tf.clip_by_value(tf.cast(levels * scale - lo * scale, tf.int32), 0, 255)
    luts = tf.where(hi > lo, stretched, tf.cast(levels, tf.int32))
    return _apply_luts(_lut_indices(image), luts)


def posterize(image, bits):
    """Keeps the `bits` (Python int, 1..8) most significant bits of each value."""
    if not 1 <= bits <= 8:
        raise ValueError(f"posterize bits must be in [1, 8], got {bits}")
    return tf.bitwise.bitwise_and(image, tf.constant(256 - 2 ** (8 - bits), tf.uint8))


def solarize(image, threshold):
    """Inverts the pixels >= threshold (Python int 0..256; 256 changes nothing)."""
    if threshold >= 256:
        return tf.identity(image)
    # 255 - x is x XOR 255 for uint8; arithmetic beats a select on big images.
    invert = tf.cast(image >= tf.constant(threshold, tf.uint8), tf.uint8) * 255
    return tf.bitwise.bitwise_xor(image, invert)


def solarize_add(image, addition, threshold=128):
    """Adds `addition` (clipped to [0, 255]) to the pixels below `threshold` (Python ints)."""
    pixels = tf.cast(image, tf.int32)
    below = tf.cast(pixels < threshold, tf.int32)
    return tf.cast(tf.clip_by_value(pixels + addition * below, 0, 255), tf.uint8)


def invert(image):
    """255 - image."""
    return 255 - image


def color(image, factor):
    """Saturation: 0 gives the grey image, 1 the original (PIL ImageEnhance.Color)."""
    return blend(grayscale(image)[..., None], image, factor)


def contrast(image, factor):
    """0 gives the uniform mean-grey image, 1 the original (PIL ImageEnhance.Contrast)."""
    gray = grayscale(image)
    # float64: a float32 sum of ~10**6 grey levels is not exact.
    mean = tf.reduce_mean(tf.cast(gray, tf.float64))
    return blend(tf.cast(tf.floor(mean + 0.5), tf.float32), image, factor)


def brightness(image, factor):
    """0 gives black, 1 the original (PIL ImageEnhance.Brightness)."""
    return blend(0.0, image, factor)


def sharpness(image, factor):
    """0 gives PIL's SMOOTH-filtered image, 1 the original, 2 a sharpened one.

    The smoothing kernel is [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13; as in PIL the one-pixel
    border keeps its original values. Needs h, w >= 3.
    """
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    pixels = tf.cast(image, tf.float32)
    smoothed = tf.nn.depthwise_conv2d(pixels[None], kernel, strides=[1, 1, 1, 1], padding="VALID")
    smoothed = tf.clip_by_value(tf.floor(smoothed[0] + 0.5), 0.0, 255.0)
    # The border keeps its values: the interior is pasted into the original.
    degenerate = sample_lib.paste(pixels, smoothed, 1, 1)
    return blend(degenerate, pixels, factor)
