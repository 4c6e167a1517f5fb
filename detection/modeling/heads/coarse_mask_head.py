"""ShapeMask coarse mask head: the prior-conditioned instance embedding -> a coarse mask.

ShapeMask paper, Fig. 5. As the original framework: the prior mask is lifted to the
instance features' channels by a 1x1 layer and added to them (so the decoder sees where the
prior puts the object), then the mask decoder (`num_convs` 3x3 convs at S x S, batch norm +
activation, a 1x1 prediction) gives the coarse mask logits of the instance's class.
"""

import keras
import tensorflow as tf

from detection.modeling.layers.composite import Composite
from detection.modeling.layers.mask_decoder import MaskDecoder


class CoarseMaskHead(Composite, keras.layers.Layer):
    """Call: `instance_features [b, n, S, S, C]`, `prior_masks [b, n, S, S]`, `classes [b, n]`
    -> coarse mask logits `[b, n, S, S]` float32 over the outer boxes."""

    def __init__(
        self,
        num_classes,
        num_downsample_channels,
        num_convs=4,
        use_category_for_mask=True,
        norm_activation=None,
        **kwargs,
    ):
        """Initializes the head.

        Args:
          num_classes: classes including the background.
          num_downsample_channels: C, channels of the instance features and the decoder.
          num_convs: hidden 3x3 convs of the decoder.
          use_category_for_mask: one mask per class, else one class-agnostic mask.
          norm_activation: a `NormActivationConfig`.
          **kwargs: `keras.layers.Layer` arguments.
        """
        kwargs.setdefault("name", "coarse_mask_head")
        super().__init__(**kwargs)
        self._embed_prior = keras.layers.Dense(
            num_downsample_channels, dtype=self.dtype_policy, name="embed_prior"
        )
        self._decoder = MaskDecoder(
            num_classes,
            num_downsample_channels,
            num_convs,
            upsample_factor=1,
            use_category_for_mask=use_category_for_mask,
            norm_activation=norm_activation,
            dtype=self.dtype_policy,
            name="decoder",
        )

    def call(self, instance_features, prior_masks, classes, training=None):
        prior = tf.cast(prior_masks, self.compute_dtype)[..., tf.newaxis]
        features = instance_features + self._embed_prior(prior)
        return tf.cast(self._decoder(features, classes, training=training), tf.float32)
