"""Instance-mask ops: cutting box-relative mask targets, and pasting them back into images.

- `crop_and_resize_masks` (TensorFlow, static output size): the box-relative crop of each
  instance mask (Mask R-CNN's parser).
- `resample_box_masks` (TensorFlow, static shapes): masks that tile one box, resampled over
  another (ShapeMask's shape priors moved into the outer box).
- `roi_mask_targets` (TensorFlow, static shapes): the mask head's training target of each
  sampled ROI, resampled from its matched groundtruth crop.
- `paste_instance_mask` (NumPy, on the host): a predicted box-relative soft mask back into a
  full-image binary mask (COCO mask evaluation, drawing).

All use the same geometry: cell i of an S x S mask over box [y0, y1] has its centre at
`y0 + (i + 0.5) * (y1 - y0) / S`, in continuous pixel coordinates where pixel k spans [k, k+1).
"""

import numpy as np
import tensorflow as tf


def crop_and_resize_masks(masks, boxes, crop_size):
    """Crops each instance mask to its box and resizes the crop to crop_size x crop_size.

    Output pixel (i, j) of mask k is the bilinear sample of `masks[k]` at the centre of cell
    (i, j) of a crop_size x crop_size grid laid over `boxes[k]`; boxes are in pixel edges
    (a box [0, 0, h, w] covers the whole mask), so a binary shape that fills its box gives
    values >= 0.5 on the whole crop. Samples within half a pixel of the mask border repeat
    the border value instead of fading to 0.

    Args:
      masks: [n, h, w] float32 masks (n may be 0).
      boxes: [n, 4] yxyx in pixels of the masks' image.
      crop_size: static int, the output side.

    Returns:
      [n, crop_size, crop_size] float32.
    """
    masks = tf.convert_to_tensor(masks, tf.float32)
    boxes = tf.cast(tf.reshape(boxes, [-1, 4]), tf.float32)
    # One pixel of edge replication keeps every sample (all within half a pixel of the
    # image) inside the padded image, where crop_and_resize interpolates.
    padded = tf.pad(masks, [[0, 0], [1, 1], [1, 1]], mode="SYMMETRIC")
    padded_size = tf.cast(tf.shape(padded)[1:3], tf.float32)
    cell = tf.tile(
        tf.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=-1), [1, 2]
    ) / float(crop_size)
    # crop_and_resize samples normalized [y1, y2] at y1 * (H - 1) + i * (y2 - y1) * (H - 1) /
    # (crop - 1) in pixel-index coordinates (pixel centres at integers); place the first and
    # last samples at the first and last cell centres. The +1 is the padding's shift, and
    # -0.5 turns pixel edges into pixel-index coordinates.
    first_last = boxes + tf.constant([0.5, 0.5, -0.5, -0.5]) * cell + 1.0 - 0.5
    normalized = first_last / tf.tile(tf.maximum(padded_size - 1.0, 1.0), [2])
    num_masks = tf.shape(masks)[0]
    crops = tf.image.crop_and_resize(
        padded[:, :, :, tf.newaxis],
        normalized,
        tf.range(num_masks, dtype=tf.int32),
        [int(crop_size), int(crop_size)],
        method="bilinear",
    )
    return crops[:, :, :, 0]


def _cell_weights(low, high, box_low, box_high, cells, size):
    """Bilinear weights of `size` output cell centres over [low, high] on `cells` box cells.

    Args:
      low, high: [...] the ROI's extent on one axis.
      box_low, box_high: [...] the groundtruth box's extent on that axis.
      cells: Python int, the crop's cells along the axis.
      size: Python int, output cells along the axis.

    Returns:
      [..., size, cells] weights; cells outside the crop count as 0, so an output cell centre
      more than half a crop cell outside the box gets weight 0 in total.
    """
    extent = tf.maximum(box_high - box_low, 1e-6)[..., tf.newaxis]
    centres = low[..., tf.newaxis] + (tf.range(size, dtype=tf.float32) + 0.5) * (
        (high - low)[..., tf.newaxis] / float(size)
    )
    # Position in crop cells, with cell j's centre at j.
    coords = (centres - box_low[..., tf.newaxis]) / extent * float(cells) - 0.5
    return tf.nn.relu(1.0 - tf.abs(coords[..., tf.newaxis] - tf.range(cells, dtype=tf.float32)))


def resample_box_masks(masks, boxes, target_boxes, output_size):
    """Masks that tile `boxes`, resampled over `target_boxes` (zero outside their box).

    Output cell (i, j) of instance k is the bilinear sample, at the cell's centre inside
    `target_boxes[k]`, of `masks[k]`, whose cells tile `boxes[k]` with the geometry of
    `crop_and_resize_masks` (cell centres at `y0 + (i + 0.5) * (y1 - y0) / S`). Outside its box
    a mask is 0 (it fades to 0 over the half cell past its border). ShapeMask moves its shape
    priors from the tight detection box into the outer box this way.

    Args:
      masks: [b, K, S_h, S_w] values over `boxes`.
      boxes: [b, K, 4] the boxes the masks tile (any pixel frame).
      target_boxes: [b, K, 4] the boxes to sample, same frame.
      output_size: int, the side of the output.

    Returns:
      [b, K, output_size, output_size] float32.
    """
    output_size = int(output_size)
    masks = tf.cast(masks, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    target_boxes = tf.cast(target_boxes, tf.float32)
    if masks.shape.rank != 4:
        raise ValueError(f"masks must be [batch, K, S_h, S_w], got {masks.shape}.")
    rows = _cell_weights(
        target_boxes[..., 0],
        target_boxes[..., 2],
        boxes[..., 0],
        boxes[..., 2],
        masks.shape[2],
        output_size,
    )
    cols = _cell_weights(
        target_boxes[..., 1],
        target_boxes[..., 3],
        boxes[..., 1],
        boxes[..., 3],
        masks.shape[3],
        output_size,
    )
    # Bilinear sampling is separable: rows then columns, two small batched matrix products.
    return tf.einsum("bkiy,bkyx,bkjx->bkij", rows, masks, cols)


def roi_mask_targets(gt_masks, gt_boxes, rois, matched_gt_indices, output_size):
    """Mask targets of sampled ROIs, cut from their matched groundtruth mask crops.

    Output cell (i, j) of ROI k is `resample_box_masks` of the crop of groundtruth row
    `matched_gt_indices[k]` (which tiles its box) over the ROI. Targets stay soft values in
    [0, 1], as in the original framework (no binarisation).

    Args:
      gt_masks: [b, M, S_h, S_w] box-relative crops in [0, 1] (the parser's `gt_masks`).
      gt_boxes: [b, M, 4] the groundtruth boxes the crops tile (network-input pixels).
      rois: [b, K, 4] sampled ROIs, same pixels.
      matched_gt_indices: [b, K] int row of each ROI's groundtruth, -1 for none.
      output_size: int, the side of the targets (`architecture.mask_target_size`).

    Returns:
      [b, K, output_size, output_size] float32; all zero where the index is -1.
    """
    gt_masks = tf.cast(gt_masks, tf.float32)
    indices = tf.cast(matched_gt_indices, tf.int32)
    if gt_masks.shape.rank != 4:
        raise ValueError(f"gt_masks must be [batch, M, S_h, S_w], got {gt_masks.shape}.")
    valid = indices >= 0
    safe = tf.maximum(indices, 0)
    masks = tf.gather(gt_masks, safe, batch_dims=1)  # [b, K, S_h, S_w]
    boxes = tf.gather(tf.cast(gt_boxes, tf.float32), safe, batch_dims=1)  # [b, K, 4]
    targets = resample_box_masks(masks, boxes, rois, output_size)
    return tf.where(valid[..., tf.newaxis, tf.newaxis], targets, 0.0)


def _bilinear_weights(start, end, cells, size):
    """Weights sampling `cells` mask cells spanning [start, end) at pixel centres.

    The mask is treated as zero outside its cells (the bilinear "zero padding" of Detectron-style
    pasting), so at threshold 0.5 an all-ones mask covers the pixels whose centres lie inside
    the box, less the corners that bilinear sampling rounds off.

    Returns:
      (weights [n, cells], first_pixel) for pixels first_pixel .. first_pixel + n - 1, or
      (None, 0) when no pixel of [0, size) is touched.
    """
    cell = (end - start) / cells
    first = max(int(np.floor(start - cell)), 0)
    last = min(int(np.ceil(end + cell)), size)
    if last <= first:
        return None, 0
    centres = np.arange(first, last, dtype=np.float64) + 0.5
    coords = (centres - start) / cell - 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(coords[:, None] - np.arange(cells)[None, :]))
    return weights, first


def paste_instance_mask(mask, box, image_height, image_width, threshold=0.5):
    """Pastes one box-relative soft mask into an image-sized binary mask.

    Each image pixel centre is mapped into mask coordinates (cell i's centre sits at
    `ymin + (i + 0.5) * (ymax - ymin) / mask_h`) and the mask is sampled bilinearly, counting
    values outside the mask as 0; pixels with value >= threshold are foreground.

    Args:
      mask: [mask_h, mask_w] foreground probabilities over `box`.
      box: [4] yxyx in image pixels (may extend past the image).
      image_height: int, output height.
      image_width: int, output width.
      threshold: float binarisation threshold.

    Returns:
      [image_height, image_width] uint8 in {0, 1}.
    """
    mask = np.asarray(mask, np.float64)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [mask_h, mask_w], got shape {mask.shape}.")
    out = np.zeros((int(image_height), int(image_width)), np.uint8)
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    if not (ymax > ymin and xmax > xmin):
        return out
    row_weights, y0 = _bilinear_weights(ymin, ymax, mask.shape[0], out.shape[0])
    col_weights, x0 = _bilinear_weights(xmin, xmax, mask.shape[1], out.shape[1])
    if row_weights is None or col_weights is None:
        return out
    # Bilinear sampling is separable: rows then columns, two small matrix products.
    values = row_weights @ mask @ col_weights.T
    out[y0 : y0 + values.shape[0], x0 : x0 + values.shape[1]] = values >= threshold
    return out


def paste_instance_masks(masks, boxes, height, width):
    """TensorFlow twin of `paste_instance_mask` for a batch of masks, soft values.

    Same geometry: image pixel centre `p + 0.5` falls at mask coordinate
    `(p + 0.5 - box_start) / cell - 0.5`, sampled bilinearly with the mask counted as 0 outside
    its cells. A zero border of one cell around each mask makes `crop_and_resize` (which
    extrapolates 0 beyond its input) compute exactly that.

    Args:
      masks: [n, mask_h, mask_w] foreground probabilities over `boxes`.
      boxes: [n, 4] yxyx in image pixels (may extend past the image).
      height, width: scalar ints or int32 tensors, the output size.

    Returns:
      [n, height, width] float32 soft masks; threshold them (>= 0.5) for binary masks.
    """
    masks = tf.convert_to_tensor(masks, tf.float32)
    boxes = tf.cast(tf.reshape(boxes, [-1, 4]), tf.float32)
    mask_h, mask_w = masks.shape[1], masks.shape[2]
    padded = tf.pad(masks, [[0, 0], [1, 1], [1, 1]])[..., tf.newaxis]
    out_size = tf.cast(tf.stack([height, width]), tf.float32)
    start = boxes[:, :2]
    cell = (boxes[:, 2:] - start) / tf.constant([mask_h, mask_w], tf.float32)
    # An empty box pastes nothing (as the NumPy version); a unit cell keeps the maths finite.
    non_empty = tf.reduce_all(cell > 0, axis=-1)
    cell = tf.where(non_empty[:, tf.newaxis], cell, 1.0)
    # Padded-mask coordinates (index of cell centres; the border shifts them by 1) of the
    # first and last output pixels; crop_and_resize wants them over (padded size - 1).
    first = (0.5 - start) / cell + 0.5
    last = (out_size - 0.5 - start) / cell + 0.5
    denominator = tf.constant([mask_h + 1, mask_w + 1], tf.float32)
    normalized = tf.concat([first / denominator, last / denominator], axis=-1)
    pasted = tf.image.crop_and_resize(
        padded,
        normalized,
        tf.range(tf.shape(masks)[0], dtype=tf.int32),
        tf.cast(tf.stack([height, width]), tf.int32),
        method="bilinear",
        extrapolation_value=0.0,
    )
    return tf.where(non_empty[:, tf.newaxis, tf.newaxis], pasted[..., 0], 0.0)
