"""RetinaNet network: backbone -> FPN -> class/box head.

Only the network: anchors, losses and post-processing belong to the model_fn.
"""

import keras

from detection.modeling.layers.composite import Composite


class RetinaNetNetwork(Composite, keras.Model):
    """Composes already-built parts into one Keras model.

    Call: `images [batch, H, W, 3]` ->
    `{'class_outputs': {'3': [batch, h_3, w_3, A * num_classes], ...},
      'box_outputs': {'3': [batch, h_3, w_3, A * 4], ...}}`, always float32
    (cast from the compute dtype under a mixed-precision policy, since the
    losses and the post-processing need full precision).
    """

    def __init__(self, backbone, fpn, head, **kwargs):
        """Initializes the network.

        Args:
          backbone: layer mapping images to `{'2': C2, ...}`.
          fpn: layer mapping backbone features to `{'3': P3, ...}`; None to
            feed the backbone features to the head directly.
          head: layer mapping features to `(class_outputs, box_outputs)`.
          **kwargs: `keras.Model` arguments.
        """
        kwargs.setdefault("name", "retinanet")
        super().__init__(**kwargs)
        self.backbone = backbone
        self.fpn = fpn
        self.head = head

    def pyramid_features(self, images, training=None):
        """`images [batch, H, W, 3]` -> the head's input `{'3': [batch, h_3, w_3, c], ...}`
        (compute dtype)."""
        features = self.backbone(images, training=training)
        if self.fpn is not None:
            features = self.fpn(features, training=training)
        return features

    def head_outputs(self, features, training=None):
        """The head on pyramid features: `{'class_outputs': ..., 'box_outputs': ...}`, float32."""
        class_outputs, box_outputs = self.head(features, training=training)
        return {
            "class_outputs": {k: keras.ops.cast(v, "float32") for k, v in class_outputs.items()},
            "box_outputs": {k: keras.ops.cast(v, "float32") for k, v in box_outputs.items()},
        }

    def call(self, images, training=None):
        return self.head_outputs(self.pyramid_features(images, training), training)
