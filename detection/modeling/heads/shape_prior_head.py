"""ShapeMask shape prior head: box features -> weights over the class's shape priors -> a prior.

Kuo, Angelova, Malik, Lin. "ShapeMask: Learning to Segment Novel Objects by Refining Shape
Priors", ICCV 2019 (Fig. 4). As the original framework:

- Instance features: the FPN features ROI-aligned over each outer box (S x S, S =
  mask_crop_size), projected to `num_downsample_channels` by a 1x1 layer.
- Shape recognition: the features inside the (tight) box are averaged into one vector, which
  a linear layer (N(0, 0.01) kernel) maps to K logits per mask class; the instance's class
  picks its K, and a softmax turns them into weights over that class's K shape priors.
- The prior: the weighted sum of the K priors (each spans the tight box), resampled into the
  outer box (zero outside the tight box).

The priors are a constant [mask classes, K, S, S] array (the prior file of
`detection/tools/make_shape_priors.py`), not a trained weight; without one the head uses one
all-zero prior, so the prior mask is 0 everywhere (the original's behaviour without a file).
"""

import keras
import numpy as np
import tensorflow as tf

from detection.modeling.layers.composite import Composite
from detection.modeling.layers.mask_decoder import select_class
from detection.ops import masks as mask_ops
from detection.ops import roi_align


class ShapePriorHead(Composite, keras.layers.Layer):
    """Instance features and prior masks of boxes.

    Call: `features {level: [b, h_l, w_l, c]}`, `boxes [b, n, 4]`, `outer_boxes [b, n, 4]`
    (network-input pixels), `classes [b, n]` int ->
    `(instance_features [b, n, S, S, C] in the compute dtype, prior_masks [b, n, S, S]
    float32)`, C = num_downsample_channels, masks over the outer boxes.
    """

    def __init__(
        self,
        num_classes,
        num_downsample_channels,
        mask_crop_size,
        use_category_for_mask=True,
        shape_priors=None,
        min_level=3,
        max_level=5,
        **kwargs,
    ):
        """Initializes the head.

        Args:
          num_classes: classes including the background.
          num_downsample_channels: C, channels of the instance features.
          mask_crop_size: S, side of the feature crops and the priors.
          use_category_for_mask: priors and shape logits per class; else one class-agnostic
            set.
          shape_priors: None, or [mask classes, K, S, S] float array (mask classes =
            num_classes with use_category_for_mask, else 1).
          min_level, max_level: FPN levels the instance features are read from
            (`shapemask_parser.mask_min_level` / `mask_max_level`).
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: invalid sizes, or priors of the wrong shape.
        """
        kwargs.setdefault("name", "shape_prior_head")
        super().__init__(**kwargs)
        for key, value in (
            ("num_classes", num_classes),
            ("num_downsample_channels", num_downsample_channels),
            ("mask_crop_size", mask_crop_size),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"shapemask_head: {key} must be an integer >= 1, got {value!r}")
        self._mask_classes = int(num_classes) if use_category_for_mask else 1
        self._use_category_for_mask = bool(use_category_for_mask)
        self._crop_size = int(mask_crop_size)
        self._min_level = int(min_level)
        self._max_level = int(max_level)
        expected = (self._mask_classes, self._crop_size, self._crop_size)
        if shape_priors is None:
            shape_priors = np.zeros((self._mask_classes, 1) + expected[1:], np.float32)
        shape_priors = np.asarray(shape_priors, np.float32)
        if shape_priors.ndim != 4 or (shape_priors.shape[0],) + shape_priors.shape[2:] != expected:
            raise ValueError(
                f"shapemask_head: shape priors must be [{expected[0]}, num_clusters, "
                f"{expected[1]}, {expected[2]}] (mask classes, clusters, mask_crop_size, "
                f"mask_crop_size), got {list(shape_priors.shape)}"
            )
        self.num_clusters = shape_priors.shape[1]
        # [classes * K, S * S]: one matrix product picks and mixes a class's priors.
        self._priors = tf.constant(shape_priors.reshape(-1, self._crop_size**2))
        self._downsample = keras.layers.Dense(
            num_downsample_channels, dtype=self.dtype_policy, name="downsample"
        )
        self._shape_classifier = keras.layers.Dense(
            self._mask_classes * self.num_clusters,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            dtype=self.dtype_policy,
            name="shape_classifier",
        )

    def _mask_class_indices(self, classes):
        if self._use_category_for_mask:
            return tf.cast(classes, tf.int32)
        return tf.zeros_like(classes, tf.int32)

    def prior_weights(self, instance_features, box_masks, classes):
        """Softmax weights over the K priors of each instance's class.

        Args:
          instance_features: [b, n, S, S, C].
          box_masks: [b, n, S, S], 1 inside the tight box (the features to average).
          classes: [b, n] int.

        Returns:
          [b, n, K] float32, each row summing to 1.
        """
        weights = tf.cast(box_masks, instance_features.dtype)[..., tf.newaxis]
        pooled = tf.reduce_mean(instance_features * weights, axis=[2, 3])
        logits = tf.cast(self._shape_classifier(pooled), tf.float32)
        logits = tf.reshape(
            logits, [-1, logits.shape[1], self._mask_classes, self.num_clusters]
        )  # [b, n, classes, K]
        logits = tf.transpose(logits, [0, 1, 3, 2])
        logits = select_class(logits, self._mask_class_indices(classes), self._mask_classes)
        return tf.nn.softmax(logits, axis=-1)

    def call(self, features, boxes, outer_boxes, classes, training=None):
        del training  # No batch norm or dropout.
        boxes = tf.cast(boxes, tf.float32)
        outer_boxes = tf.cast(outer_boxes, tf.float32)
        crops = roi_align.multilevel_roi_align(
            features,
            tf.stop_gradient(outer_boxes),
            self._crop_size,
            min_level=self._min_level,
            max_level=self._max_level,
        )
        instance_features = self._downsample(tf.cast(crops, self.compute_dtype))
        size = self._crop_size
        ones = tf.zeros_like(boxes[..., 0])[..., tf.newaxis, tf.newaxis] + tf.ones([size, size])
        box_masks = mask_ops.resample_box_masks(ones, boxes, outer_boxes, size)
        weights = self.prior_weights(instance_features, box_masks, classes)  # [b, n, K]
        one_hot = tf.one_hot(self._mask_class_indices(classes), self._mask_classes)
        mixing = tf.reshape(
            one_hot[..., :, tf.newaxis] * weights[..., tf.newaxis, :],
            [-1, weights.shape[1], self._mask_classes * self.num_clusters],
        )
        priors = tf.reshape(
            tf.einsum("bnm,mp->bnp", mixing, self._priors), [-1, mixing.shape[1], size, size]
        )
        prior_masks = mask_ops.resample_box_masks(priors, boxes, outer_boxes, size)
        return instance_features, prior_masks
