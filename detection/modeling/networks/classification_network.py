"""Image classification network: backbone -> classification head."""

import keras

from detection.modeling.layers.composite import Composite


class ClassificationNetwork(Composite, keras.Model):
    """Composes already-built parts into one Keras model.

    Call: `images [batch, H, W, 3]` -> `{'logits': [batch, num_classes] float32}` (cast from the
    compute dtype under a mixed-precision policy: the loss needs full precision).
    """

    def __init__(self, backbone, head, **kwargs):
        """Initializes the network.

        Args:
          backbone: layer mapping images to `{'2': C2, ...}`.
          head: layer mapping the backbone's levels to logits `[batch, num_classes]`.
          **kwargs: `keras.Model` arguments.
        """
        kwargs.setdefault("name", "classification")
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = head

    def call(self, images, training=None):
        features = self.backbone(images, training=training)
        return {"logits": keras.ops.cast(self.head(features, training=training), "float32")}
