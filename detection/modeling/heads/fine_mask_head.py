"""ShapeMask fine mask head: refines the coarse mask at the upsampled resolution.

ShapeMask paper, Fig. 6. As the original framework:

- The instance embedding is the mean of the instance features over the pixels the coarse mask
  calls foreground (probability > 0.5); it is subtracted from every pixel's features, so what
  is left says how a pixel differs from the object.
- The coarse mask probabilities, lifted to the features' channels by a 1x1 layer, are added.
- The mask decoder (`num_convs` 3x3 convs, batch norm + activation), a transposed conv that
  upsamples by `upsample_factor`, and a 1x1 prediction give the fine mask logits of the
  instance's class at S * upsample_factor.

Gradients reach the coarse head through the added probabilities (the binarised mask used for
the embedding has none, as in the original).
"""

import keras
import tensorflow as tf

from detection.modeling.layers.composite import Composite
from detection.modeling.layers.mask_decoder import MaskDecoder


class FineMaskHead(Composite, keras.layers.Layer):
    """Call: `instance_features [b, n, S, S, C]`, `coarse_mask_logits [b, n, S, S]`,
    `classes [b, n]` -> fine mask logits `[b, n, S * u, S * u]` float32 over the outer boxes
    (u = upsample_factor)."""

    def __init__(
        self,
        num_classes,
        num_downsample_channels,
        num_convs=4,
        upsample_factor=4,
        use_category_for_mask=True,
        norm_activation=None,
        **kwargs,
    ):
        """Initializes the head.

        Args:
          num_classes: classes including the background.
          num_downsample_channels: C, channels of the instance features and the decoder.
          num_convs: hidden 3x3 convs of the decoder.
          upsample_factor: u >= 1, the fine masks' side over the coarse masks'.
          use_category_for_mask: one mask per class, else one class-agnostic mask.
          norm_activation: a `NormActivationConfig`.
          **kwargs: `keras.layers.Layer` arguments.
        """
        kwargs.setdefault("name", "fine_mask_head")
        super().__init__(**kwargs)
        self._embed_coarse = keras.layers.Dense(
            num_downsample_channels, dtype=self.dtype_policy, name="embed_coarse"
        )
        self._decoder = MaskDecoder(
            num_classes,
            num_downsample_channels,
            num_convs,
            upsample_factor=upsample_factor,
            use_category_for_mask=use_category_for_mask,
            norm_activation=norm_activation,
            dtype=self.dtype_policy,
            name="decoder",
        )

    def call(self, instance_features, coarse_mask_logits, classes, training=None):
        probabilities = tf.sigmoid(tf.cast(coarse_mask_logits, tf.float32))
        foreground = tf.cast(probabilities > 0.5, tf.float32)[..., tf.newaxis]
        # Mean features over the foreground, summed in float32; the tiny floor makes an empty
        # mask's embedding 0 / eps = 0.
        total = tf.reduce_sum(foreground, axis=[2, 3])
        summed = tf.reduce_sum(tf.cast(instance_features, tf.float32) * foreground, axis=[2, 3])
        embedding = tf.cast(summed / (total + 1e-20), self.compute_dtype)
        features = instance_features - embedding[:, :, tf.newaxis, tf.newaxis, :]
        features += self._embed_coarse(tf.cast(probabilities, self.compute_dtype)[..., tf.newaxis])
        return tf.cast(self._decoder(features, classes, training=training), tf.float32)
