"""Fast R-CNN ROI sampling and targets (the original framework's `roi_sampling`), static shapes.

`sample_rois` follows the original's `assign_and_sample_proposals`:

1. Candidates are the proposals, plus the groundtruth boxes themselves with `mix_gt_boxes`.
2. Each candidate takes its highest-IoU groundtruth box (ops/matcher): foreground when the IoU
   is >= fg_iou_thresh, background when it is in [bg_iou_thresh_lo, bg_iou_thresh_hi), else
   ignored.
3. A balanced random subset (ops/sampling): at most `floor(fg_fraction * S)` foreground, then
   background up to S = num_samples_per_image.
4. Targets: the matched class (0 for background) and the matched box encoded against the ROI
   with `box_weights` (0 for background).

Cascade stages after the first call it with `skip_subsampling=True` (the original did the same
with `mix_gt_boxes=False` and fg = bg-hi = the stage's IoU threshold): every ROI is kept in its
input order and only labelled.

Differences from the original, on purpose: padded groundtruth rows and empty ROIs (the zero
padding of the proposals) are never candidates, and rows without a sample are flagged by
`valid` instead of being filled with arbitrary unsampled candidates; samples come foreground
first; a foreground IoU equal to fg_iou_thresh counts (the original needed > it).
"""

import tensorflow as tf

from detection.ops import boxes as box_ops
from detection.ops import matcher
from detection.ops import sampling


def _check_thresholds(fg_fraction, fg_iou_thresh, bg_iou_thresh_hi, bg_iou_thresh_lo):
    if not 0.0 < float(fg_fraction) <= 1.0:
        raise ValueError(f"roi_sampling.fg_fraction must be in (0, 1], got {fg_fraction}.")
    if not 0.0 <= bg_iou_thresh_lo <= bg_iou_thresh_hi <= fg_iou_thresh <= 1.0:
        raise ValueError(
            "roi_sampling thresholds need 0 <= bg_iou_thresh_lo <= bg_iou_thresh_hi <= "
            f"fg_iou_thresh <= 1, got bg_iou_thresh_lo={bg_iou_thresh_lo}, "
            f"bg_iou_thresh_hi={bg_iou_thresh_hi}, fg_iou_thresh={fg_iou_thresh}."
        )


def _non_empty(boxes):
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def sample_rois(
    rois,
    gt_boxes,
    gt_classes,
    num_samples_per_image,
    fg_fraction,
    fg_iou_thresh,
    bg_iou_thresh_hi,
    bg_iou_thresh_lo,
    mix_gt_boxes=True,
    box_weights=(10.0, 10.0, 5.0, 5.0),
    seed=None,
    skip_subsampling=False,
):
    """Samples ROIs for the Fast R-CNN head and builds their class and box targets.

    Args:
      rois: [b, R, 4] proposals (yxyx, network-input pixels); empty rows are padding.
      gt_boxes: [b, M, 4] groundtruth boxes, -1 padded.
      gt_classes: [b, M] int groundtruth classes (1..num_classes-1), -1 padded.
      num_samples_per_image: int S, samples per image (with skip_subsampling, must equal the
        number of candidates).
      fg_fraction: float in (0, 1], the largest foreground share of the S samples.
      fg_iou_thresh: float, IoU >= this is foreground.
      bg_iou_thresh_hi: float, IoU < this (and >= bg_iou_thresh_lo) is background.
      bg_iou_thresh_lo: float, IoU < this is ignored.
      mix_gt_boxes: bool, add the groundtruth boxes to the candidates.
      box_weights: 4 floats scaling the encoded box targets (the stage's regression weights).
      seed: optional op seed of the random subsampling.
      skip_subsampling: bool, label every candidate in its input order instead of sampling
        (cascade stages after the first).

    Returns:
      A dict with, for S samples per image, foreground first (input order with
      skip_subsampling):
        rois [b, S, 4]: the sampled boxes (zeros where not valid, except with
          skip_subsampling, which returns the candidates unchanged);
        class_targets [b, S] int32: the matched class, 0 for background and invalid rows;
        box_targets [b, S, 4]: the matched box encoded against the ROI, 0 unless foreground;
        matched_gt_indices [b, S] int32: row of gt_boxes, -1 unless foreground;
        is_foreground [b, S] bool;
        valid [b, S] bool: a sampled foreground or background row (losses weight by it).
    """
    _check_thresholds(fg_fraction, fg_iou_thresh, bg_iou_thresh_hi, bg_iou_thresh_lo)
    rois = tf.cast(rois, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_classes = tf.cast(gt_classes, tf.int32)
    box_ops.check_boxes_shape(rois, "rois")
    box_ops.check_boxes_shape(gt_boxes, "gt_boxes")

    candidates, usable = rois, _non_empty(rois)
    if mix_gt_boxes:
        candidates = tf.concat([rois, gt_boxes], axis=1)
        usable = tf.concat([usable, matcher.valid_box_rows(gt_boxes, gt_classes)], axis=1)
    matches = matcher.match_boxes(
        candidates,
        gt_boxes,
        gt_classes,
        match_threshold=fg_iou_thresh,
        unmatched_threshold=bg_iou_thresh_hi,
        negative_lower_bound=bg_iou_thresh_lo,
    )
    foreground = (matches >= 0) & usable
    background = tf.equal(matches, matcher.NEGATIVE) & usable

    num_samples = int(num_samples_per_image)
    num_candidates = candidates.shape[1]
    if skip_subsampling:
        if num_samples != num_candidates:
            raise ValueError(
                f"with skip_subsampling, num_samples_per_image ({num_samples}) must equal the "
                f"number of candidate ROIs ({num_candidates})."
            )
        rois = candidates
        is_foreground, valid = foreground, foreground | background
    else:
        if num_candidates < num_samples:
            # Fewer candidates than samples: empty rows that are never picked keep top_k legal.
            pad = num_samples - num_candidates
            candidates = tf.pad(candidates, [[0, 0], [0, pad], [0, 0]])
            matches = tf.pad(matches, [[0, 0], [0, pad]], constant_values=matcher.IGNORED)
            foreground = tf.pad(foreground, [[0, 0], [0, pad]])
            background = tf.pad(background, [[0, 0], [0, pad]])
        picked_fg, picked_bg = sampling.sample_balanced(
            foreground, background, num_samples, fg_fraction, seed=seed
        )
        # Rank 2 (foreground) > 1 (background) > 0 (not picked); top_k keeps index order on ties.
        rank = 2 * tf.cast(picked_fg, tf.int32) + tf.cast(picked_bg, tf.int32)
        rank, order = tf.math.top_k(rank, k=num_samples, sorted=True)
        is_foreground, valid = rank == 2, rank > 0
        rois = tf.where(valid[..., tf.newaxis], tf.gather(candidates, order, batch_dims=1), 0.0)
        matches = tf.gather(matches, order, batch_dims=1)

    matched_gt_indices = tf.where(is_foreground, matches, -1)
    class_targets = matcher.gather_matched(gt_classes, matched_gt_indices, 0)
    matched_boxes = matcher.gather_matched(gt_boxes, matched_gt_indices, 0.0)
    box_targets = tf.where(
        is_foreground[..., tf.newaxis],
        box_ops.encode_boxes(matched_boxes, rois, weights=box_weights),
        0.0,
    )
    return {
        "rois": rois,
        "class_targets": class_targets,
        "box_targets": box_targets,
        "matched_gt_indices": matched_gt_indices,
        "is_foreground": is_foreground,
        "valid": valid,
    }


def sample_foreground_for_masks(sampled, num_mask_samples_per_image):
    """The first K foreground samples of `sample_rois`, for the mask head (K padded).

    Args:
      sampled: the dict returned by `sample_rois` (S samples per image).
      num_mask_samples_per_image: int K.

    Returns:
      A dict of rois [b, K, 4], class_targets [b, K] int32, matched_gt_indices [b, K] int32 and
      valid [b, K] bool (a foreground sample); rows past the foreground have zeros, class 0,
      index -1 and valid False.
    """
    num_masks = int(num_mask_samples_per_image)
    if num_masks < 1:
        raise ValueError(f"mask_sampling.num_mask_samples_per_image must be >= 1, got {num_masks}.")
    is_foreground = sampled["is_foreground"]
    num_samples = is_foreground.shape[-1]
    k = min(num_masks, num_samples)
    # Foreground first, in sample order (samples of skip_subsampling are not sorted).
    _, order = tf.math.top_k(tf.cast(is_foreground, tf.int32), k=k, sorted=True)
    valid = tf.gather(is_foreground, order, batch_dims=1)
    rois = tf.gather(sampled["rois"], order, batch_dims=1)
    classes = tf.gather(sampled["class_targets"], order, batch_dims=1)
    indices = tf.gather(sampled["matched_gt_indices"], order, batch_dims=1)
    pad = num_masks - k
    return {
        "rois": tf.pad(tf.where(valid[..., tf.newaxis], rois, 0.0), [[0, 0], [0, pad], [0, 0]]),
        "class_targets": tf.pad(tf.where(valid, classes, 0), [[0, 0], [0, pad]]),
        "matched_gt_indices": tf.pad(
            tf.where(valid, indices, -1), [[0, 0], [0, pad]], constant_values=-1
        ),
        "valid": tf.pad(valid, [[0, 0], [0, pad]]),
    }
