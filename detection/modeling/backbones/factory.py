"""`architecture.backbone` -> a backbone layer: images -> {'2': C2, ...}.

To add a backbone: write the layer in this package (constructor arguments only, no params),
add a builder `_name(params, dtype)` below that maps its params section onto them, and list it
in `_BACKBONES`.
"""

from detection.hyperparameters import registry
from detection.modeling.backbones.resnet import ResNet
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


_BACKBONES = {"resnet": _resnet}


def backbone_from_params(params, dtype=None):
    """The backbone named by `architecture.backbone`.

    Raises:
      ParamsError: unknown backbone or a value its constructor rejects.
    """
    name = params.architecture.backbone
    return registry.build(_BACKBONES, name, "architecture.backbone", params, dtype)
