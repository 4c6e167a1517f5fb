"""Whole networks from the params tree: each family factory builds a part, this composes them."""

from detection.modeling.backbones.factory import backbone_from_params
from detection.modeling.decoders.factory import decoder_from_params, pyramid_channels
from detection.modeling.heads.factory import check_shared_head_channels, retinanet_head_from_params
from detection.modeling.networks.retinanet_network import RetinaNetNetwork


def retinanet_network_from_params(params, dtype=None):
    """Backbone -> decoder (none for `identity`) -> RetinaNet head, as one Keras model.

    Raises:
      ParamsError: a part rejects its params, or the parts do not fit together (levels,
        channels); raised before any weight is created.
    """
    backbone = backbone_from_params(params, dtype)
    decoder = decoder_from_params(params, dtype)
    check_shared_head_channels(
        pyramid_channels(params, backbone, decoder), "retinanet_head", params
    )
    return RetinaNetNetwork(
        backbone, decoder, retinanet_head_from_params(params, dtype), dtype=dtype
    )
