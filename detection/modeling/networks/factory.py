"""Whole networks from the params tree: each family factory builds a part, this composes them."""

from detection.hyperparameters import ParamsError
from detection.modeling.backbones.factory import backbone_from_params
from detection.modeling.decoders.factory import decoder_from_params
from detection.modeling.heads.factory import (
    classification_head_from_params,
    retinanet_head_from_params,
    segmentation_head_from_params,
)
from detection.modeling.layers.aspp import Aspp
from detection.modeling.layers.factory import norm_activation_from_params
from detection.modeling.networks.classification_network import ClassificationNetwork
from detection.modeling.networks.retinanet_network import RetinaNetNetwork
from detection.modeling.networks.segmentation_network import SegmentationNetwork


def retinanet_network_from_params(params, dtype=None):
    """Backbone -> decoder -> RetinaNet head, as one Keras model."""
    return RetinaNetNetwork(
        backbone_from_params(params, dtype),
        decoder_from_params(params, dtype),
        retinanet_head_from_params(params, dtype),
        dtype=dtype,
    )


def _decoder_unless_identity(params, dtype):
    """The decoder of `architecture.multilevel_features`, None for 'identity' (the head reads
    the backbone's levels as they are)."""
    if params.architecture.multilevel_features == "identity":
        return None
    return decoder_from_params(params, dtype)


def classification_network_from_params(params, dtype=None):
    """Backbone -> classification head, as one Keras model.

    Raises:
      ParamsError: `architecture.multilevel_features` other than 'identity' (the original's
        classifiers read the backbone's levels; the classification params have no decoder
        section).
    """
    features = params.architecture.multilevel_features
    if features != "identity":
        raise ParamsError(
            f"architecture.multilevel_features={features!r}: classification feeds the "
            "backbone's levels to classification_head; only 'identity' is supported"
        )
    return ClassificationNetwork(
        backbone_from_params(params, dtype),
        classification_head_from_params(params, dtype),
        dtype=dtype,
    )


def segmentation_network_from_params(params, dtype=None):
    """Backbone (-> ASPP) -> decoder (-> pyramid fusion) -> segmentation head."""
    architecture = params.architecture
    level = params.segmentation_head.level
    if architecture.multilevel_features != "identity" and not (
        architecture.min_level <= level <= architecture.max_level
    ):
        raise ParamsError(
            f"segmentation_head.level={level} is outside the decoder's levels "
            f"architecture.min_level={architecture.min_level}..max_level={architecture.max_level}"
        )
    aspp = None
    if architecture.use_aspp:
        # The original's ASPP width: 256 filters, not a params key.
        aspp = Aspp(256, norm_activation=norm_activation_from_params(params), dtype=dtype)
    return SegmentationNetwork(
        backbone_from_params(params, dtype),
        _decoder_unless_identity(params, dtype),
        segmentation_head_from_params(params, dtype),
        aspp=aspp,
        fusion_level=level if architecture.use_pyramid_fusion else None,
        dtype=dtype,
    )
