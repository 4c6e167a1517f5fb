"""`architecture.multilevel_features` -> a decoder: {'2': C2, ...} -> {'3': P3, ...}.

To add a decoder (NAS-FPN...): write the layer in this package, a builder `_name(params,
dtype)` below, and list it in `_DECODERS`.
"""

from detection.hyperparameters import registry
from detection.modeling.decoders.fpn import Fpn
from detection.modeling.layers.factory import norm_activation_from_params


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


_DECODERS = {"fpn": _fpn}


def decoder_from_params(params, dtype=None):
    """The decoder named by `architecture.multilevel_features`.

    Raises:
      ParamsError: unknown decoder or a value its constructor rejects.
    """
    name = params.architecture.multilevel_features
    return registry.build(_DECODERS, name, "architecture.multilevel_features", params, dtype)
