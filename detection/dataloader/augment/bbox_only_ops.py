"""The `*_Only_BBoxes` ops: an op applied to the pixels of each box, box by box.

Each box is picked independently with a probability, and the picked boxes are processed one
after the other in a random order (the order matters where boxes overlap). The op sees only
the box's pixels (`sample.box_pixel_ranges`: every pixel the box overlaps) and its result is
written back there, so pixels outside every box never change. Boxes are not moved: the
reference leaves them as they are even when their content shifted inside them.

Masks: a geometric op inside a box (flip, translate, shear, rotate) moves the pixels of every
mask inside that box exactly as it moves the image pixels - the masks are treated as extra
image channels, with 0 where the op uncovers pixels - so image and masks stay aligned. Colour
ops and cutout inside boxes leave the masks unchanged. No op is refused when masks are given.
"""

import tensorflow as tf

from detection.dataloader.augment import geometric_ops
from detection.dataloader.augment import sample as sample_lib
from detection.dataloader.augment import seeds


def _apply_per_box(sample, crop_fn, probability, seed):
    """Runs crop_fn(image_crop, masks_crop or None, seed) -> same on each picked box."""
    num_boxes = tf.shape(sample.boxes)[0]
    ranges = sample_lib.box_pixel_ranges(sample.boxes, tf.shape(sample.image)[:2])
    picked = seeds.bernoulli(seeds.child(seed, 0), probability, [num_boxes])
    order = tf.argsort(seeds.uniform(seeds.child(seed, 1), [num_boxes]))
    # Looping over the picked boxes only keeps a tf.cond out of the loop body.
    picked_in_order = tf.boolean_mask(order, tf.gather(picked, order))
    op_seed = seeds.child(seed, 2)
    has_masks = sample.masks is not None

    def body(k, image, *masks):
        index = picked_in_order[k]
        top, left, bottom, right = tf.unstack(ranges[index])
        image_crop = image[top:bottom, left:right]
        masks_crop = masks[0][:, top:bottom, left:right] if has_masks else None
        image_crop, masks_crop = crop_fn(image_crop, masks_crop, seeds.child(op_seed, index))
        image = sample_lib.paste(image, image_crop, top, left)
        if has_masks:
            return k + 1, image, sample_lib.paste(masks[0], masks_crop, top, left, 1)
        return k + 1, image

    loop_vars = (tf.constant(0), sample.image) + ((sample.masks,) if has_masks else ())
    num_picked = tf.size(picked_in_order)
    outputs = tf.while_loop(lambda k, *_: k < num_picked, body, loop_vars)
    masks = outputs[2] if has_masks else None
    return sample_lib.Sample(outputs[1], sample.boxes, masks, sample.indices)


def warp_in_boxes(sample, forward_fn, probability, seed, replace=128):
    """Warps the content of each picked box inside the box (image and masks alike).

    Args:
      sample: a `Sample` with non-degenerate boxes inside [0, 1].
      forward_fn: crop_size [2] int32 (height, width) -> [3, 3] forward matrix in the
        crop's pixels (see geometric_ops).
      probability: chance that a given box is processed.
      seed: [2] seed.
      replace: fill value of image pixels the warp uncovers (masks get 0).

    Returns:
      The `Sample` with the same boxes.
    """

    def crop_fn(image_crop, masks_crop, _):
        forward = forward_fn(tf.shape(image_crop)[:2])
        image_crop = geometric_ops.warp_image(image_crop, forward, replace)
        if masks_crop is not None:
            masks_crop = geometric_ops.warp_masks(masks_crop, forward)
        return image_crop, masks_crop

    return _apply_per_box(sample, crop_fn, probability, seed)


def apply_in_boxes(sample, image_fn, probability, seed):
    """Applies image_fn(image_crop [bh, bw, 3], seed) -> same to each picked box; masks
    are left unchanged."""
    return _apply_per_box(
        sample, lambda crop, masks, op_seed: (image_fn(crop, op_seed), masks), probability, seed
    )


def flip_matrix(crop_size):
    """Forward matrix of a left-right flip of a crop of `crop_size` (height, width)."""
    width = tf.cast(crop_size[1], tf.float32)
    return tf.stack([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
