"""Mask R-CNN mask head: a small FCN over each ROI, one mask logit map per class.

He, Gkioxari, Dollar, Girshick. "Mask R-CNN", ICCV 2017 (the FPN mask head). As the original
TPU framework's `mrcnn_head`:

- `num_convs` 3x3 convolutions of `num_filters` channels over the `s x s` ROI features, a 2x2
  stride-2 transposed convolution (to `2s x 2s`, the mask target size), each followed by batch
  norm + activation, or by the activation alone without batch norm;
- a 1x1 convolution to one logit map per class (one in all, `class_agnostic_mask_pred`);
- every kernel starts from MSRA fill (normal, stddev sqrt(2 / (k * k * output channels))),
  separable convolutions keep the Keras defaults; biases start at zero;
- the output is the map of each ROI's class (the groundtruth class in training, the detected
  class at inference): the loss and the pasted masks only ever read that one.
"""

import keras
import tensorflow as tf

from detection.modeling.heads.fast_rcnn_head import msra_fill
from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers.composite import Composite
from detection.modeling.layers.conv import conv2d


class MaskHead(Composite, keras.layers.Layer):
    """ROI features + class ids -> mask logits of those classes.

    Call: `(roi_features [b, K, s, s, c], class_indices [b, K] int)` ->
    `mask_outputs [b, K, 2s, 2s]` logits (class 0, background, reads a channel that is never
    trained; callers only use foreground classes).
    """

    def __init__(
        self,
        num_classes,
        num_convs=4,
        num_filters=256,
        use_separable_conv=False,
        use_batch_norm=False,
        norm_activation=None,
        class_agnostic_mask_pred=False,
        **kwargs,
    ):
        """Initializes the head.

        Args:
          num_classes: classes including the background class 0.
          num_convs: hidden 3x3 convolutions before the upsampling.
          num_filters: channels of the hidden convolutions and the upsampling.
          use_separable_conv: depthwise-separable instead of plain convolutions.
          use_batch_norm: batch norm + activation after each hidden layer; when False only
            the activation.
          norm_activation: a `NormActivationConfig`.
          class_agnostic_mask_pred: one mask per ROI instead of one per class.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on invalid sizes.
        """
        kwargs.setdefault("name", "mask_head")
        super().__init__(**kwargs)
        for key, value, low in (
            ("num_classes", num_classes, 2),
            ("num_convs", num_convs, 0),
            ("num_filters", num_filters, 1),
        ):
            if int(value) != value or value < low:
                raise ValueError(f"mrcnn_head: {key} must be an integer >= {low}, got {value!r}")
        self._class_agnostic = class_agnostic_mask_pred
        self._use_batch_norm = use_batch_norm
        norm_activation = norm_activation or norm_lib.NormActivationConfig()
        self._activation_fn = norm_activation.activation_fn

        def conv(filters, kernel_size, name):
            return conv2d(
                filters,
                kernel_size,
                separable=use_separable_conv,
                kernel_initializer=msra_fill(kernel_size, filters),
                dtype=self.dtype_policy,
                name=name,
            )

        self._convs = [conv(num_filters, 3, f"mask-conv-l{i}") for i in range(num_convs)]
        self._upsample = keras.layers.Conv2DTranspose(
            num_filters,
            2,
            strides=2,
            padding="valid",
            kernel_initializer=msra_fill(2, num_filters),
            dtype=self.dtype_policy,
            name="conv5-mask",
        )
        self._norms = []
        if use_batch_norm:
            self._norms = [
                norm_activation.build(name=f"mask-bn-{i}", dtype=self.dtype_policy)
                for i in range(num_convs + 1)
            ]
        self._predict = conv(1 if class_agnostic_mask_pred else num_classes, 1, "mask_fcn_logits")

    def call(self, roi_features, class_indices, training=None):
        shape = roi_features.shape
        if shape.rank != 5:
            raise ValueError(f"mrcnn_head: roi_features must be [b, K, s, s, c], got shape {shape}")
        num_rois = shape[1]
        x = keras.ops.reshape(roi_features, (-1, shape[2], shape[3], shape[4]))
        for i, layer in enumerate(self._convs + [self._upsample]):
            x = layer(x)
            x = (
                self._norms[i](x, training=training)
                if self._use_batch_norm
                else self._activation_fn(x)
            )
        logits = self._predict(x)  # [b * K, 2s, 2s, classes]
        logits = keras.ops.reshape(logits, (-1, num_rois) + tuple(logits.shape[1:]))
        if self._class_agnostic:
            return logits[..., 0]
        # A one-hot contraction instead of a gather: static shapes, and on TPU a matmul.
        one_hot = tf.one_hot(tf.cast(class_indices, tf.int32), logits.shape[-1], dtype=logits.dtype)
        return tf.einsum("bkhwc,bkc->bkhw", logits, one_hot)
