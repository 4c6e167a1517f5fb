"""Whole networks from the params tree: each family factory builds a part, this composes them."""

from detection.modeling.backbones.factory import backbone_from_params
from detection.modeling.decoders.factory import decoder_from_params
from detection.modeling.heads.factory import (
    coarse_mask_head_from_params,
    fine_mask_head_from_params,
    retinanet_head_from_params,
    shape_prior_head_from_params,
)
from detection.modeling.networks.retinanet_network import RetinaNetNetwork
from detection.modeling.networks.shapemask_network import ShapeMaskNetwork


def retinanet_network_from_params(params, dtype=None):
    """Backbone -> decoder -> RetinaNet head, as one Keras model."""
    return RetinaNetNetwork(
        backbone_from_params(params, dtype),
        decoder_from_params(params, dtype),
        retinanet_head_from_params(params, dtype),
        dtype=dtype,
    )


def shapemask_network_from_params(params, dtype=None):
    """RetinaNet's backbone, decoder and head plus ShapeMask's three mask heads."""
    return ShapeMaskNetwork(
        backbone_from_params(params, dtype),
        decoder_from_params(params, dtype),
        retinanet_head_from_params(params, dtype),
        shape_prior_head_from_params(params, dtype),
        coarse_mask_head_from_params(params, dtype),
        fine_mask_head_from_params(params, dtype),
        dtype=dtype,
    )
