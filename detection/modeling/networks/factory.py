"""Whole networks from the params tree: each family factory builds a part, this composes them."""

from detection.modeling.backbones.factory import backbone_from_params
from detection.modeling.decoders.factory import decoder_from_params
from detection.modeling.heads.factory import retinanet_head_from_params
from detection.modeling.networks.retinanet_network import RetinaNetNetwork


def retinanet_network_from_params(params, dtype=None):
    """Backbone -> decoder -> RetinaNet head, as one Keras model."""
    return RetinaNetNetwork(
        backbone_from_params(params, dtype),
        decoder_from_params(params, dtype),
        retinanet_head_from_params(params, dtype),
        dtype=dtype,
    )
