"""Fast R-CNN box head: class logits and box deltas for each ROI.

Girshick. "Fast R-CNN", ICCV 2015; the conv + fc variants of Wu et al. "Rethinking
Classification and Localization for Object Detection" (4conv1fc). As the original TPU
framework's `frcnn_head`:

- the ROI features `[b, n, s, s, c]` go through `num_convs` 3x3 convolutions of `num_filters`
  channels (per ROI), are flattened, and go through `num_fcs` fully connected layers of
  `fc_dims` units; each hidden layer is followed by batch norm + activation, or by the
  activation alone without batch norm;
- hidden convolutions start from MSRA-fill kernels (normal, stddev sqrt(2 / (3 * 3 *
  num_filters)), i.e. fan-out variance scaling), separable ones keep the Keras defaults; fully
  connected layers keep the Glorot-uniform default; all biases start at zero;
- the class layer starts from N(0, 0.01) kernels, the box layer from N(0, 0.001) (tiny initial
  deltas, so the first refined boxes are the ROIs themselves);
- `class_agnostic_bbox_pred`: one box per ROI instead of one per class.
"""

import math

import keras

from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers.composite import Composite
from detection.modeling.layers.conv import conv2d


def msra_fill(kernel_size, filters):
    """Normal initializer of stddev sqrt(2 / (k * k * filters)) (Caffe2's MSRAFill, fan out)."""
    return keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (kernel_size**2 * filters)))


class FastRCNNHead(Composite, keras.layers.Layer):
    """ROI features -> class logits and box deltas.

    Call: `roi_features [b, n, s, s, c]` -> `(class_outputs [b, n, num_classes],
    box_outputs [b, n, 4 * num_classes])`, or `box_outputs [b, n, 4]` when class-agnostic;
    channel `k * 4 + j` is coordinate `j` of class `k`'s box.
    """

    def __init__(
        self,
        num_classes,
        num_convs=0,
        num_filters=256,
        use_separable_conv=False,
        num_fcs=2,
        fc_dims=1024,
        use_batch_norm=False,
        norm_activation=None,
        class_agnostic_bbox_pred=False,
        **kwargs,
    ):
        """Initializes the head.

        Args:
          num_classes: classes including the background class 0.
          num_convs: hidden 3x3 convolutions before the fully connected layers.
          num_filters: channels of the hidden convolutions.
          use_separable_conv: depthwise-separable instead of plain convolutions.
          num_fcs: hidden fully connected layers.
          fc_dims: units of the hidden fully connected layers.
          use_batch_norm: batch norm + activation after each hidden layer; when False only
            the activation.
          norm_activation: a `NormActivationConfig`.
          class_agnostic_bbox_pred: predict one box per ROI instead of one per class.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on invalid sizes.
        """
        kwargs.setdefault("name", "fast_rcnn_head")
        super().__init__(**kwargs)
        for key, value, low in (
            ("num_classes", num_classes, 2),
            ("num_convs", num_convs, 0),
            ("num_filters", num_filters, 1),
            ("num_fcs", num_fcs, 0),
            ("fc_dims", fc_dims, 1),
        ):
            if int(value) != value or value < low:
                raise ValueError(f"frcnn_head: {key} must be an integer >= {low}, got {value!r}")
        self._num_classes = num_classes
        self._class_agnostic = class_agnostic_bbox_pred
        self._use_batch_norm = use_batch_norm
        norm_activation = norm_activation or norm_lib.NormActivationConfig()
        self._activation_fn = norm_activation.activation_fn
        self._convs = [
            conv2d(
                num_filters,
                3,
                separable=use_separable_conv,
                kernel_initializer=msra_fill(3, num_filters),
                dtype=self.dtype_policy,
                name=f"conv_{i}",
            )
            for i in range(num_convs)
        ]
        # Original layer names: fc6, fc7, ...
        self._fcs = [
            keras.layers.Dense(fc_dims, dtype=self.dtype_policy, name=f"fc{i + 6}")
            for i in range(num_fcs)
        ]
        self._conv_norms = []
        self._fc_norms = []
        if use_batch_norm:
            build = lambda name: norm_activation.build(name=name, dtype=self.dtype_policy)
            self._conv_norms = [build(f"conv_{i}-bn") for i in range(num_convs)]
            self._fc_norms = [build(f"fc{i + 6}-bn") for i in range(num_fcs)]
        self._class_predict = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            dtype=self.dtype_policy,
            name="class-predict",
        )
        self._box_predict = keras.layers.Dense(
            4 if class_agnostic_bbox_pred else 4 * num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            dtype=self.dtype_policy,
            name="box-predict",
        )

    @property
    def class_agnostic_bbox_pred(self):
        return self._class_agnostic

    def _hidden(self, x, layer, norms, i, training):
        x = layer(x)
        if self._use_batch_norm:
            return norms[i](x, training=training)
        return self._activation_fn(x)

    def call(self, roi_features, training=None):
        shape = roi_features.shape
        if shape.rank != 5:
            raise ValueError(f"frcnn_head: roi_features must be [b, n, s, s, c], got shape {shape}")
        num_rois = shape[1]
        x = keras.ops.reshape(roi_features, (-1, shape[2], shape[3], shape[4]))
        for i, conv in enumerate(self._convs):
            x = self._hidden(x, conv, self._conv_norms, i, training)
        x = keras.ops.reshape(x, (-1, num_rois, x.shape[1] * x.shape[2] * x.shape[3]))
        for i, fc in enumerate(self._fcs):
            x = self._hidden(x, fc, self._fc_norms, i, training)
        return self._class_predict(x), self._box_predict(x)
