"""Atrous Spatial Pyramid Pooling (Chen, Papandreou, Schroff, Adam, "Rethinking Atrous
Convolution for Semantic Image Segmentation", arXiv:1706.05587), as the original framework
applied it to the coarsest backbone level when `architecture.use_aspp` is true.

Five parallel branches of `filters` channels, each a bias-free convolution followed by batch
norm + activation: image pooling (global average, 1x1 conv, broadcast back to the input size),
a 1x1 conv, and three 3x3 convs with dilation rates 6, 12 and 18; their concatenation goes
through one more 1x1 conv + batch norm + activation.
"""

import keras

from detection.modeling.layers import conv as conv_lib
from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers.composite import Composite

ATROUS_RATES = (6, 12, 18)


class Aspp(Composite, keras.layers.Layer):
    """Call: `[b, h, w, c_in]` -> `[b, h, w, filters]`."""

    def __init__(self, filters=256, atrous_rates=ATROUS_RATES, norm_activation=None, **kwargs):
        """Args:
        filters: channels of every branch and of the output.
        atrous_rates: dilation rates of the 3x3 branches.
        norm_activation: a `NormActivationConfig`.
        **kwargs: `keras.layers.Layer` arguments.
        """
        kwargs.setdefault("name", "aspp")
        super().__init__(**kwargs)
        norm_activation = norm_activation or norm_lib.NormActivationConfig()
        policy = self.dtype_policy

        def conv(kernel_size, name, dilation_rate=1):
            return conv_lib.Conv2D(
                filters,
                kernel_size,
                padding="same",
                dilation_rate=dilation_rate,
                use_bias=False,
                kernel_initializer=keras.initializers.VarianceScaling(),
                dtype=policy,
                name=name,
            )

        names = ["pool", "conv1x1"] + [f"atrous{rate}" for rate in atrous_rates]
        self._convs = [conv(1, "pool"), conv(1, "conv1x1")] + [
            conv(3, f"atrous{rate}", rate) for rate in atrous_rates
        ]
        self._norms = [norm_activation.build(name=f"{n}_bn", dtype=policy) for n in names]
        self._project = conv(1, "project")
        self._project_norm = norm_activation.build(name="project_bn", dtype=policy)

    def call(self, inputs, training=None):
        size = keras.ops.shape(inputs)
        # The pooled branch is computed at 1x1 and then broadcast: batch norm of a constant map
        # has the statistics of its single pixel, so this equals convolving the broadcast map.
        pooled = keras.ops.mean(inputs, axis=[1, 2], keepdims=True)
        pooled = self._norms[0](self._convs[0](pooled), training=training)
        branches = [keras.ops.broadcast_to(pooled, (size[0], size[1], size[2], pooled.shape[-1]))]
        for conv, norm in zip(self._convs[1:], self._norms[1:]):
            branches.append(norm(conv(inputs), training=training))
        merged = keras.ops.concatenate(branches, axis=-1)
        return self._project_norm(self._project(merged), training=training)
