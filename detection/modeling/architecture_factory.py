"""Translates the params tree into constructed model parts (the only place that reads it).

Layers never see `params`; they take constructor arguments. Each family resolves through one
explicit dict here, so `architecture.backbone: spinenet` or `multilevel_features: nasfpn` fail
with a message listing what exists instead of an obscure error deep in a layer.
"""

from detection.hyperparameters import ParamsError
from detection.modeling.backbones.resnet import ResNet
from detection.modeling.fpn import Fpn
from detection.modeling.heads.retinanet_head import RetinanetHead
from detection.modeling.layers.norm_activation import NormActivationConfig
from detection.modeling.retinanet_network import RetinaNetNetwork


def norm_activation_from_params(params):
    p = params.batch_norm_activation
    try:
        return NormActivationConfig(
            momentum=p.batch_norm_momentum,
            epsilon=p.batch_norm_epsilon,
            trainable=p.batch_norm_trainable,
            use_sync_bn=p.use_sync_bn,
            activation=p.activation,
        )
    except ValueError as error:
        raise ParamsError(f"batch_norm_activation: {error}") from None


def _resnet(params, dtype):
    return ResNet(
        params.resnet.resnet_depth,
        norm_activation=norm_activation_from_params(params),
        init_drop_connect_rate=params.resnet.init_drop_connect_rate,
        dropblock_keep_prob=params.dropblock.dropblock_keep_prob,
        dropblock_size=params.dropblock.dropblock_size,
        dtype=dtype,
        name="resnet",
    )


_BACKBONES = {"resnet": _resnet}


def backbone_from_params(params, dtype=None):
    """The backbone named by `architecture.backbone`: images -> {'2': C2, ...}."""
    name = params.architecture.backbone
    if name not in _BACKBONES:
        raise ParamsError(
            f"architecture.backbone={name!r} is not implemented yet; available: "
            f"{', '.join(sorted(_BACKBONES))}"
        )
    try:
        return _BACKBONES[name](params, dtype)
    except ValueError as error:
        raise ParamsError(f"{name}: {error}") from None


def _fpn(params, dtype):
    return Fpn(
        min_level=params.architecture.min_level,
        max_level=params.architecture.max_level,
        fpn_feat_dims=params.fpn.fpn_feat_dims,
        use_separable_conv=params.fpn.use_separable_conv,
        use_batch_norm=params.fpn.use_batch_norm,
        norm_activation=norm_activation_from_params(params),
        dtype=dtype,
        name="fpn",
    )


_MULTILEVEL_FEATURES = {"fpn": _fpn}


def multilevel_features_from_params(params, dtype=None):
    """The feature pyramid named by `architecture.multilevel_features`."""
    name = params.architecture.multilevel_features
    if name not in _MULTILEVEL_FEATURES:
        raise ParamsError(
            f"architecture.multilevel_features={name!r} is not implemented yet; available: "
            f"{', '.join(sorted(_MULTILEVEL_FEATURES))}"
        )
    return _MULTILEVEL_FEATURES[name](params, dtype)


def anchors_per_location(params):
    """num_scales * len(aspect_ratios), checked against retinanet_head.anchors_per_location."""
    count = params.anchor.num_scales * len(params.anchor.aspect_ratios)
    declared = params.retinanet_head.anchors_per_location
    if declared is not None and declared != count:
        raise ParamsError(
            f"retinanet_head.anchors_per_location={declared} but anchor.num_scales * "
            f"len(anchor.aspect_ratios) = {count}"
        )
    return count


def retinanet_head_from_params(params, dtype=None):
    p = params.retinanet_head
    return RetinanetHead(
        min_level=params.architecture.min_level,
        max_level=params.architecture.max_level,
        num_classes=params.architecture.num_classes,
        anchors_per_location=anchors_per_location(params),
        num_convs=p.num_convs,
        num_filters=p.num_filters,
        use_separable_conv=p.use_separable_conv,
        use_batch_norm=p.use_batch_norm,
        norm_activation=norm_activation_from_params(params),
        dtype=dtype,
        name="retinanet_head",
    )


def retinanet_network_from_params(params, dtype=None):
    """Backbone -> feature pyramid -> RetinaNet head, as one Keras model."""
    return RetinaNetNetwork(
        backbone_from_params(params, dtype),
        multilevel_features_from_params(params, dtype),
        retinanet_head_from_params(params, dtype),
        dtype=dtype,
    )
