"""`architecture.multilevel_features` -> a decoder: {'2': C2, ...} -> {'3': P3, ...}.

`identity` builds no layer (`None`): the backbone's own levels `min_level..max_level` go to
the heads, as SpineNet's detectors do. `pyramid_channels` checks, before anything is built,
that the backbone can feed the decoder and returns the channels the heads will see.

To add a decoder: write the layer in this package (with an `output_channels_for(input
channels)` method that checks its inputs), a builder `_name(params, dtype)` below, and list
it in `_DECODERS`.
"""

from detection.hyperparameters import ParamsError, registry
from detection.modeling.decoders.fpn import Fpn
from detection.modeling.decoders.nasfpn import NasFpn
from detection.modeling.layers.factory import norm_activation_from_params

IDENTITY = "identity"


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


def _nasfpn(params, dtype):
    p = params.nasfpn
    architecture = params.architecture
    # The original's retinanet_nasfpn.yaml sets nasfpn.min_level/max_level; its code used
    # the architecture's levels, so here they may only repeat them.
    for key in ("min_level", "max_level"):
        value = p[key]
        if value is not None and value != architecture[key]:
            raise ParamsError(
                f"nasfpn.{key}={value} must equal architecture.{key}={architecture[key]} "
                f"(or be null)"
            )
    return NasFpn(
        min_level=architecture.min_level,
        max_level=architecture.max_level,
        fpn_feat_dims=p.fpn_feat_dims,
        num_repeats=p.num_repeats,
        use_separable_conv=p.use_separable_conv,
        block_fn=p.block_fn,
        activation=p.activation,
        norm_activation=norm_activation_from_params(params),
        init_drop_connect_rate=p.init_drop_connect_rate,
        use_sum_for_combination=p.use_sum_for_combination,
        dropblock_keep_prob=params.dropblock.dropblock_keep_prob,
        dropblock_size=params.dropblock.dropblock_size,
        dtype=dtype,
        name="nasfpn",
    )


def _identity(params, dtype):
    del params, dtype  # No layer: the backbone's levels are the pyramid.
    return None


_DECODERS = {"fpn": _fpn, "nasfpn": _nasfpn, IDENTITY: _identity}

DECODERS = tuple(_DECODERS)


def decoder_from_params(params, dtype=None):
    """The decoder named by `architecture.multilevel_features` (None for `identity`).

    Raises:
      ParamsError: unknown decoder or a value its constructor rejects.
    """
    name = params.architecture.multilevel_features
    return registry.build(_DECODERS, name, "architecture.multilevel_features", params, dtype)


def _levels_text(channels):
    levels = sorted(int(level) for level in channels)
    return f"{levels[0]}-{levels[-1]}" if levels else "none"


def pyramid_channels(params, backbone, decoder):
    """`{str(level): channels}` the heads receive at levels `min_level..max_level`.

    Args:
      params: the params tree (`architecture` names the parts and the levels).
      backbone: the built backbone layer (its `output_channels`).
      decoder: the decoder layer, or None for `identity`.

    Raises:
      ParamsError: the backbone cannot feed the decoder, or (identity) lacks a level.
    """
    architecture = params.architecture
    backbone_channels = backbone.output_channels
    if decoder is not None:
        try:
            return decoder.output_channels_for(backbone_channels)
        except ValueError as error:
            raise ParamsError(
                f"architecture.multilevel_features={architecture.multilevel_features!r} "
                f"cannot take architecture.backbone={architecture.backbone!r}: "
                f"{str(error).splitlines()[0]}"
            ) from None
    wanted = [str(level) for level in range(architecture.min_level, architecture.max_level + 1)]
    missing = [level for level in wanted if level not in backbone_channels]
    if missing:
        raise ParamsError(
            f"architecture.multilevel_features='{IDENTITY}' feeds the backbone's levels to the "
            f"heads, but architecture.backbone={architecture.backbone!r} gives levels "
            f"{_levels_text(backbone_channels)}, not architecture.min_level..max_level = "
            f"{wanted[0]}-{wanted[-1]}; use a decoder (fpn, nasfpn) or a backbone with those "
            f"levels (spinenet, spinenet_mbconv)"
        )
    return {level: backbone_channels[level] for level in wanted}
