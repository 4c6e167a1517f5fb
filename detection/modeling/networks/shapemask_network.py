"""ShapeMask network: RetinaNet (backbone -> FPN -> class/box head) plus the mask branch.

    images -> backbone -> FPN -> RetinaNet head                       (`call`)
    FPN features + boxes, outer boxes, classes
      -> shape prior head -> instance features, prior masks
      -> coarse mask head -> coarse mask logits                       (`mask_outputs`)
      -> fine mask head   -> fine mask logits

The boxes of the mask branch come from outside the network: jittered groundtruth boxes in
training (the parser's), the detections of the RetinaNet outputs at inference (the model fn's
detection generator), as in the original framework. Only the network: losses and
post-processing belong to the model fn.
"""

import tensorflow as tf

from detection.modeling.networks.retinanet_network import RetinaNetNetwork


class ShapeMaskNetwork(RetinaNetNetwork):
    """Composes already-built parts into one Keras model.

    Call: `images [b, H, W, 3]` -> RetinaNet's `class_outputs`, `box_outputs` (float32, see
    `RetinaNetNetwork`) and `fpn_features {'3': [b, h_3, w_3, c], ...}` (compute dtype), the
    input of `mask_outputs`.
    """

    def __init__(
        self, backbone, fpn, head, shape_prior_head, coarse_mask_head, fine_mask_head, **kwargs
    ):
        """Initializes the network.

        Args:
          backbone, fpn, head: RetinaNet's parts (see `RetinaNetNetwork`).
          shape_prior_head: a `ShapePriorHead`.
          coarse_mask_head: a `CoarseMaskHead`.
          fine_mask_head: a `FineMaskHead`.
          **kwargs: `keras.Model` arguments.
        """
        kwargs.setdefault("name", "shapemask")
        super().__init__(backbone, fpn, head, **kwargs)
        self.shape_prior_head = shape_prior_head
        self.coarse_mask_head = coarse_mask_head
        self.fine_mask_head = fine_mask_head

    # Built at the first call (`Composite`, from RetinaNetNetwork): the mask heads, which
    # `call` does not reach, build at the first `mask_outputs` (the model fn runs both once).

    def call(self, images, training=None):
        features = self.pyramid_features(images, training)
        return dict(self.head_outputs(features, training), fpn_features=features)

    def mask_outputs(self, fpn_features, boxes, outer_boxes, classes, training=None):
        """The mask branch on n boxes per image.

        Args:
          fpn_features: `call`'s `fpn_features`.
          boxes: [b, n, 4] tight boxes, network-input pixels.
          outer_boxes: [b, n, 4] the boxes the masks span.
          classes: [b, n] int classes (selecting priors and mask channels).
          training: batch norm mode.

        Returns:
          `{'prior_masks' [b, n, S, S], 'coarse_mask_logits' [b, n, S, S],
            'fine_mask_logits' [b, n, S * u, S * u]}`, float32, all over the outer boxes.
        """
        classes = tf.maximum(tf.cast(classes, tf.int32), 0)
        instance_features, prior_masks = self.shape_prior_head(
            fpn_features, boxes, outer_boxes, classes, training=training
        )
        coarse = self.coarse_mask_head(instance_features, prior_masks, classes, training=training)
        fine = self.fine_mask_head(instance_features, coarse, classes, training=training)
        return {
            "prior_masks": tf.cast(prior_masks, tf.float32),
            "coarse_mask_logits": coarse,
            "fine_mask_logits": fine,
        }
