"""Image classification head: multilevel features -> class logits.

As the original framework's `classification_head` section:

- `aggregation: top` uses the coarsest level the backbone returns; `all` adds every level up
  from the coarsest, each partial sum upsampled (nearest neighbour) to the next finer level's
  size, and divides by the number of levels (the levels must share one channel count, as
  SpineNet's do);
- `endpoints_num_filters > 0` projects the aggregate with a bias-free 1x1 convolution followed
  by batch norm + activation;
- global average pooling, dropout (`dropout_rate` is the fraction of units dropped, the key's
  documented meaning; the original handed it to TF1's `tf.nn.dropout` as the keep
  probability, which only matters for non-zero rates that no original config sets);
- a dense layer with N(0, 0.01) kernels and zero biases gives the logits.
"""

import keras

from detection.modeling.layers import nearest_resize
from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers.composite import Composite
from detection.modeling.layers.conv import Conv2DFixedPadding

AGGREGATIONS = ("top", "all")


class ClassificationHead(Composite, keras.layers.Layer):
    """Call: `features {'2': [b, h_2, w_2, c], ..., '5': [b, h_5, w_5, c]}` (string level
    keys) -> `logits [b, num_classes]` in the compute dtype.
    """

    def __init__(
        self,
        num_classes,
        endpoints_num_filters=0,
        aggregation="top",
        dropout_rate=0.0,
        norm_activation=None,
        **kwargs,
    ):
        """Initializes the head.

        Args:
          num_classes: number of logits (ImageNet records count a background class 0: 1001).
          endpoints_num_filters: channels of the optional 1x1 projection; 0 for none.
          aggregation: 'top' or 'all' (module docstring).
          dropout_rate: fraction of the pooled features dropped in training, in [0, 1).
          norm_activation: a `NormActivationConfig` for the projection's batch norm.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on an invalid value (the message names the key).
        """
        kwargs.setdefault("name", "classification_head")
        super().__init__(**kwargs)
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes: must be an integer >= 1, got {num_classes!r}")
        if int(endpoints_num_filters) != endpoints_num_filters or endpoints_num_filters < 0:
            raise ValueError(
                "classification_head.endpoints_num_filters: must be an integer >= 0, got "
                f"{endpoints_num_filters!r}"
            )
        if aggregation not in AGGREGATIONS:
            raise ValueError(
                f"classification_head.aggregation: unsupported value {aggregation!r}; expected "
                f"one of {list(AGGREGATIONS)}"
            )
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(
                f"classification_head.dropout_rate: must be in [0, 1), got {dropout_rate!r}"
            )
        self._aggregation = aggregation
        norm_activation = norm_activation or norm_lib.NormActivationConfig()
        policy = self.dtype_policy
        self._projection = None
        if endpoints_num_filters > 0:
            self._projection = Conv2DFixedPadding(
                int(endpoints_num_filters), 1, 1, dtype=policy, name="endpoints_conv"
            )
            self._projection_norm = norm_activation.build(name="endpoints_bn", dtype=policy)
        self._dropout = (
            keras.layers.Dropout(dropout_rate, dtype=policy, name="dropout")
            if dropout_rate > 0
            else None
        )
        self._dense = keras.layers.Dense(
            int(num_classes),
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer="zeros",
            dtype=policy,
            name="logits",
        )

    def _aggregate(self, features):
        levels = sorted(int(k) for k in features)
        if self._aggregation == "top":
            return features[str(levels[-1])]
        channels = {int(features[str(level)].shape[-1]) for level in levels}
        if len(channels) != 1:
            raise ValueError(
                "classification_head.aggregation='all' needs one channel count on every level, "
                f"got {sorted(channels)}"
            )
        # Coarse to fine, one level at a time: with sizes that are not exact multiples (224 px
        # gives 2, 4, 7, 14, 28) the chained resizes are what the original computed.
        # `resize_nearest` gives tf.image.resize's nearest values, and its gradient compiles
        # with XLA on every device (ResizeNearestNeighborGrad has no XLA kernel on CPU/GPU).
        total = features[str(levels[-1])]
        for level in reversed(levels[:-1]):
            finer = features[str(level)]
            total = finer + nearest_resize.resize_nearest(total, finer.shape[1:3])
        return total / len(levels)

    def call(self, features, training=None):
        x = self._aggregate(features)
        if self._projection is not None:
            x = self._projection_norm(self._projection(x), training=training)
        x = keras.ops.mean(x, axis=[1, 2])
        if self._dropout is not None:
            x = self._dropout(x, training=training)
        return self._dense(x)
