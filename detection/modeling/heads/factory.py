"""Heads from their params sections (`retinanet_head`, and more as models land).

Each head has one `<head>_from_params(params, dtype)` builder here; heads are chosen by the
model, not by a params key, so there is no name registry.
"""

from detection.hyperparameters import ParamsError
from detection.modeling.heads.retinanet_head import RetinaNetHead
from detection.modeling.layers.factory import norm_activation_from_params


def anchors_per_location(params, head_key="retinanet_head"):
    """num_scales * len(aspect_ratios), checked against `<head_key>.anchors_per_location`."""
    count = params.anchor.num_scales * len(params.anchor.aspect_ratios)
    declared = params[head_key].anchors_per_location
    if declared is not None and declared != count:
        raise ParamsError(
            f"{head_key}.anchors_per_location={declared} but anchor.num_scales * "
            f"len(anchor.aspect_ratios) = {count}"
        )
    return count


def check_shared_head_channels(channels, head_key, params):
    """Raises unless every level has the same channels (the head's convs are shared).

    Args:
      channels: `{str(level): channels}` the head receives (`decoders.factory.pyramid_channels`).
      head_key: the head's params section, for the message.
      params: the params tree (names the backbone and decoder in the message).

    Raises:
      ParamsError: the levels differ in channels.
    """
    if len(set(channels.values())) > 1:
        architecture = params.architecture
        raise ParamsError(
            f"{head_key} shares its convolutions across levels, so every level needs the same "
            f"channels; architecture.backbone={architecture.backbone!r} with "
            f"multilevel_features={architecture.multilevel_features!r} gives "
            f"{dict(sorted(channels.items(), key=lambda item: int(item[0])))}"
        )


def retinanet_head_from_params(params, dtype=None):
    """The RetinaNet class/box head of the `retinanet_head` section."""
    p = params.retinanet_head
    try:
        return RetinaNetHead(
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
    except ValueError as error:
        if isinstance(error, ParamsError):
            raise
        raise ParamsError(str(error).splitlines()[0]) from None
