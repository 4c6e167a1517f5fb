"""`architecture.backbone` -> a backbone layer: images -> {'2': C2, ...}.

Every backbone has an `output_channels` property `{str(level): channels}` so that decoders
and heads can be checked against it before anything is built.

To add a backbone: write the layer in this package (constructor arguments only, no params),
add a builder `_name(params, dtype)` below that maps its params section onto them, and list it
in `_BACKBONES`.
"""

import dataclasses

from detection.hyperparameters import registry
from detection.modeling.backbones.efficientnet import (
    DEFAULT_NORM_ACTIVATION,
    EFFICIENTNET_PARAMS,
    EfficientNet,
)
from detection.modeling.backbones.resnet import ResNet
from detection.modeling.backbones.spinenet import SpineNet
from detection.modeling.backbones.spinenet_mbconv import SpineNetMBConv
from detection.modeling.layers.factory import norm_activation_from_params


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


def _spinenet(params, dtype):
    p = params.spinenet
    return SpineNet(
        model_id=p.model_id,
        min_level=params.architecture.min_level,
        max_level=params.architecture.max_level,
        norm_activation=norm_activation_from_params(params),
        init_drop_connect_rate=p.init_drop_connect_rate,
        use_native_resize_op=p.use_native_resize_op,
        endpoints_num_filters=p.endpoints_num_filters,
        filter_size_scale=p.filter_size_scale,
        resample_alpha=p.resample_alpha,
        block_repeats=p.block_repeats,
        dtype=dtype,
        name="spinenet",
    )


def _spinenet_mbconv(params, dtype):
    p = params.spinenet_mbconv
    return SpineNetMBConv(
        model_id=p.model_id,
        min_level=params.architecture.min_level,
        max_level=params.architecture.max_level,
        norm_activation=norm_activation_from_params(params),
        se_ratio=p.se_ratio,
        init_drop_connect_rate=p.init_drop_connect_rate,
        use_native_resize_op=p.use_native_resize_op,
        endpoints_num_filters=p.endpoints_num_filters,
        filter_size_scale=p.filter_size_scale,
        block_repeats=p.block_repeats,
        dtype=dtype,
        name="spinenet_mbconv",
    )


def _efficientnet(model_name):
    def build(params, dtype):
        # EfficientNet keeps its published batch norm (momentum 0.99, epsilon 1e-3) and
        # swish, as the original did; how batch norm runs (frozen, cross-replica) follows
        # `batch_norm_activation` like every other part of the network.
        bn = params.batch_norm_activation
        norm_activation = dataclasses.replace(
            DEFAULT_NORM_ACTIVATION,
            trainable=bn.batch_norm_trainable,
            use_sync_bn=bn.use_sync_bn,
        )
        return EfficientNet(
            model_name,
            norm_activation=norm_activation,
            width_coefficient=params.efficientnet.width_coefficient,
            depth_coefficient=params.efficientnet.depth_coefficient,
            dtype=dtype,
            name="efficientnet",
        )

    return build


_BACKBONES = {
    "resnet": _resnet,
    "spinenet": _spinenet,
    "spinenet_mbconv": _spinenet_mbconv,
    **{name: _efficientnet(name) for name in EFFICIENTNET_PARAMS},
}

BACKBONES = tuple(_BACKBONES)


def backbone_from_params(params, dtype=None):
    """The backbone named by `architecture.backbone`.

    Raises:
      ParamsError: unknown backbone or a value its constructor rejects.
    """
    name = params.architecture.backbone
    return registry.build(_BACKBONES, name, "architecture.backbone", params, dtype)
