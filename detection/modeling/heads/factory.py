"""Heads from their params sections (`retinanet_head`, `classification_head`,
`segmentation_head`, and more as models land).

Each head has one `<head>_from_params(params, dtype)` builder here; heads are chosen by the
model, not by a params key, so there is no name registry.
"""

from detection.hyperparameters import ParamsError
from detection.modeling.heads.classification_head import ClassificationHead
from detection.modeling.heads.retinanet_head import RetinaNetHead
from detection.modeling.heads.segmentation_head import SegmentationHead
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


def _as_params_error(build):
    """Calls `build()`, turning a constructor's ValueError into a one-line ParamsError."""
    try:
        return build()
    except ValueError as error:
        if isinstance(error, ParamsError):
            raise
        raise ParamsError(str(error).splitlines()[0]) from None


def classification_head_from_params(params, dtype=None):
    """The image classification head of the `classification_head` section."""
    p = params.classification_head
    return _as_params_error(
        lambda: ClassificationHead(
            num_classes=params.architecture.num_classes,
            endpoints_num_filters=p.endpoints_num_filters,
            aggregation=p.aggregation,
            dropout_rate=p.dropout_rate,
            norm_activation=norm_activation_from_params(params),
            dtype=dtype,
            name="classification_head",
        )
    )


def segmentation_head_from_params(params, dtype=None):
    """The semantic segmentation head of the `segmentation_head` section."""
    p = params.segmentation_head
    return _as_params_error(
        lambda: SegmentationHead(
            num_classes=params.architecture.num_classes,
            level=p.level,
            num_convs=p.num_convs,
            upsample_factor=p.upsample_factor,
            upsample_num_filters=p.upsample_num_filters,
            use_batch_norm=p.use_batch_norm,
            norm_activation=norm_activation_from_params(params),
            dtype=dtype,
            name="segmentation_head",
        )
    )
