"""Multiscale anchor boxes for anchor-based detectors (RetinaNet, RPN).

Layout, as in the original framework: levels from min_level to max_level; in
a level, locations row-major (y, then x); at each location
`num_scales * len(aspect_ratios)` anchors ordered scale-major, then aspect
ratio. Level `l` has stride `2**l`, `ceil(size / 2**l)` locations per side
(what stride-2 'same' convolutions produce) and centers at
`stride / 2 + i * stride`. An anchor of octave scale `s` and aspect ratio `a`
(width / height) has base size `anchor_size * stride * 2**(s / num_scales)`,
width `base * sqrt(a)` and height `base / sqrt(a)`.
"""

import math

import numpy as np
import tensorflow as tf


def _image_hw(image_size):
    """Returns (height, width) ints from an int or a [height, width] pair."""
    if isinstance(image_size, (int, np.integer)):
        size = (int(image_size), int(image_size))
    else:
        try:
            size = tuple(int(v) for v in image_size)
        except TypeError as e:
            raise ValueError(
                f"image_size must be an int or [height, width], got {image_size!r}."
            ) from e
        if len(size) != 2:
            raise ValueError(f"image_size must be [height, width], got {image_size}.")
    if min(size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size}.")
    return size


class Anchors:
    """Anchor boxes of a feature pyramid for a fixed input size."""

    def __init__(self, min_level, max_level, num_scales, aspect_ratios, anchor_size, image_size):
        """Builds the anchors.

        Args:
          min_level: int, finest pyramid level.
          max_level: int, coarsest pyramid level (>= min_level).
          num_scales: int >= 1, octave scales per level.
          aspect_ratios: non-empty list of positive floats (width / height).
          anchor_size: positive float, base anchor size in units of the stride.
          image_size: int or [height, width] of the network input in pixels.
        """
        if int(min_level) > int(max_level) or int(min_level) < 0:
            raise ValueError(
                f"anchor levels need 0 <= min_level <= max_level, got "
                f"min_level={min_level}, max_level={max_level}."
            )
        if int(num_scales) < 1:
            raise ValueError(f"anchor.num_scales must be >= 1, got {num_scales}.")
        if not aspect_ratios or any(float(a) <= 0 for a in aspect_ratios):
            raise ValueError(
                "anchor.aspect_ratios must be a non-empty list of "
                f"positive numbers, got {aspect_ratios}."
            )
        if float(anchor_size) <= 0:
            raise ValueError(f"anchor.anchor_size must be > 0, got {anchor_size}.")
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.num_scales = int(num_scales)
        self.aspect_ratios = [float(a) for a in aspect_ratios]
        self.anchor_size = float(anchor_size)
        self.image_size = _image_hw(image_size)
        self._boxes = self._generate_boxes()

    @property
    def levels(self):
        """String level keys, finest first: ['3', '4', ...]."""
        return [str(l) for l in range(self.min_level, self.max_level + 1)]

    @property
    def anchors_per_location(self):
        return self.num_scales * len(self.aspect_ratios)

    @property
    def feature_sizes(self):
        """{level: (h, w)} number of anchor locations per level."""
        height, width = self.image_size
        return {
            str(l): (math.ceil(height / 2**l), math.ceil(width / 2**l))
            for l in range(self.min_level, self.max_level + 1)
        }

    @property
    def num_anchors(self):
        """Total number of anchors over all levels."""
        return self._boxes.shape[0]

    def _generate_boxes(self):
        """Returns a float32 NumPy array [num_anchors, 4]."""
        all_levels = []
        for level, (feat_h, feat_w) in self.feature_sizes.items():
            stride = 2.0 ** int(level)
            centers_y = stride / 2.0 + stride * np.arange(feat_h)
            centers_x = stride / 2.0 + stride * np.arange(feat_w)
            half_sizes = []  # [A, 2] (half height, half width)
            for scale in range(self.num_scales):
                base = self.anchor_size * stride * 2.0 ** (scale / self.num_scales)
                for ratio in self.aspect_ratios:
                    half_sizes.append(
                        (base / math.sqrt(ratio) / 2.0, base * math.sqrt(ratio) / 2.0)
                    )
            half_sizes = np.array(half_sizes)
            cy = centers_y[:, None, None]
            cx = centers_x[None, :, None]
            half_h = half_sizes[None, None, :, 0]
            half_w = half_sizes[None, None, :, 1]
            shape = (feat_h, feat_w, len(half_sizes))
            level_boxes = np.stack(
                [
                    np.broadcast_to(cy - half_h, shape),
                    np.broadcast_to(cx - half_w, shape),
                    np.broadcast_to(cy + half_h, shape),
                    np.broadcast_to(cx + half_w, shape),
                ],
                axis=-1,
            )
            all_levels.append(level_boxes.reshape(-1, 4))
        return np.concatenate(all_levels, axis=0).astype(np.float32)

    @property
    def boxes(self):
        """float32 tensor [num_anchors, 4] of all anchors, in the layout above."""
        return tf.constant(self._boxes)

    @property
    def numpy_boxes(self):
        """The same as `boxes`, as a NumPy array (a copy)."""
        return self._boxes.copy()

    @property
    def multilevel_boxes(self):
        """{level: float32 [h, w, A * 4]} anchors per level."""
        return self.unpack_labels(self.boxes)

    def unpack_labels(self, labels):
        """Splits per-anchor values into per-level maps.

        Args:
          labels: [num_anchors, ...] values in anchor order.

        Returns:
          {level: [h, w, A * prod(...)]}, e.g. [h, w, A] for [num_anchors] input
          and [h, w, A * 4] for [num_anchors, 4].
        """
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank is None or labels.shape[0] != self.num_anchors:
            raise ValueError(
                f"labels must have {self.num_anchors} rows (one per "
                f"anchor), got shape {labels.shape}."
            )
        unpacked = {}
        start = 0
        for level, (feat_h, feat_w) in self.feature_sizes.items():
            count = feat_h * feat_w * self.anchors_per_location
            unpacked[level] = tf.reshape(labels[start : start + count], [feat_h, feat_w, -1])
            start += count
        return unpacked
