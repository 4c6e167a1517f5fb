"""Semantic segmentation network: backbone (-> ASPP) -> decoder (-> pyramid fusion) -> head.

Only the network; the per-pixel loss and the IoU counting belong to the model fn.
"""

import keras
import tensorflow as tf

from detection.modeling.layers.composite import Composite


def fuse_pyramid(features, target_level):
    """Sum of every level resized (bilinear) to `target_level`'s size.

    The original framework's `use_pyramid_fusion`: the fused map replaces the head's level.

    Args:
      features: `{'3': [b, h_3, w_3, c], ...}`, one channel count.
      target_level: int, a key of `features`.

    Returns:
      [b, h_t, w_t, c] in the features' dtype.
    """
    target = features[str(target_level)]
    channels = {int(v.shape[-1]) for v in features.values()}
    if len(channels) != 1:
        raise ValueError(
            "architecture.use_pyramid_fusion needs one channel count on every level, got "
            f"{sorted(channels)}"
        )
    size = target.shape[1:3]
    fused = target
    for key, value in features.items():
        if key != str(target_level):
            # Resized in float32: bfloat16 resizes are not supported everywhere.
            resized = tf.image.resize(tf.cast(value, tf.float32), size, method="bilinear")
            fused += tf.cast(resized, target.dtype)
    return fused


class SegmentationNetwork(Composite, keras.Model):
    """Composes already-built parts into one Keras model.

    Call: `images [batch, H, W, 3]` -> `{'logits': [batch, h, w, num_classes] float32}`, where
    `h, w` are the head level's size times its upsample factor.
    """

    def __init__(self, backbone, decoder, head, aspp=None, fusion_level=None, **kwargs):
        """Initializes the network.

        Args:
          backbone: layer mapping images to `{'2': C2, ...}`.
          decoder: layer mapping backbone levels to pyramid levels; None feeds the backbone's
            levels to the head (`multilevel_features: identity`).
          head: layer mapping pyramid levels to logits.
          aspp: optional layer applied to the coarsest backbone level before the decoder.
          fusion_level: when set, the decoder's levels are fused (`fuse_pyramid`) at this level.
          **kwargs: `keras.Model` arguments.
        """
        kwargs.setdefault("name", "segmentation")
        super().__init__(**kwargs)
        self.backbone = backbone
        self.aspp = aspp
        self.decoder = decoder
        self.head = head
        self._fusion_level = fusion_level

    def call(self, images, training=None):
        features = dict(self.backbone(images, training=training))
        if self.aspp is not None:
            top = str(max(int(k) for k in features))
            features[top] = self.aspp(features[top], training=training)
        if self.decoder is not None:
            features = dict(self.decoder(features, training=training))
        if self._fusion_level is not None:
            features[str(self._fusion_level)] = fuse_pyramid(features, self._fusion_level)
        logits = self.head(features, training=training)
        return {"logits": keras.ops.cast(logits, "float32")}
