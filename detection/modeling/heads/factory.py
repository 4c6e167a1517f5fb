"""Heads from their params sections (`retinanet_head`, `rpn_head`, `frcnn_head`, `mrcnn_head`,
`shapemask_head`, `classification_head`, `segmentation_head`).

Each head has one `<head>_from_params(params, dtype)` builder here; heads are chosen by the
model, not by a params key, so there is no name registry.
"""

import numpy as np
import tensorflow as tf

from detection.hyperparameters import ParamsError
from detection.modeling.heads.classification_head import ClassificationHead
from detection.modeling.heads.coarse_mask_head import CoarseMaskHead
from detection.modeling.heads.fast_rcnn_head import FastRCNNHead
from detection.modeling.heads.fine_mask_head import FineMaskHead
from detection.modeling.heads.mask_head import MaskHead
from detection.modeling.heads.retinanet_head import RetinaNetHead
from detection.modeling.heads.rpn_head import RpnHead
from detection.modeling.heads.segmentation_head import SegmentationHead
from detection.modeling.heads.shape_prior_head import ShapePriorHead
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


def _build(head_class, **kwargs):
    """`head_class(**kwargs)`, a constructor's ValueError (naming the key) as a ParamsError."""
    try:
        return head_class(**kwargs)
    except ValueError as error:
        if isinstance(error, ParamsError):
            raise
        raise ParamsError(str(error).splitlines()[0]) from None


def classification_head_from_params(params, dtype=None):
    """The image classification head of the `classification_head` section."""
    p = params.classification_head
    return _build(
        ClassificationHead,
        num_classes=params.architecture.num_classes,
        endpoints_num_filters=p.endpoints_num_filters,
        aggregation=p.aggregation,
        dropout_rate=p.dropout_rate,
        norm_activation=norm_activation_from_params(params),
        dtype=dtype,
        name="classification_head",
    )


def segmentation_head_from_params(params, dtype=None):
    """The semantic segmentation head of the `segmentation_head` section."""
    p = params.segmentation_head
    return _build(
        SegmentationHead,
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


def retinanet_head_from_params(params, dtype=None):
    """The RetinaNet class/box head of the `retinanet_head` section."""
    p = params.retinanet_head
    return _build(
        RetinaNetHead,
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


def rpn_head_from_params(params, dtype=None):
    """The region proposal head of the `rpn_head` section, over the architecture's levels."""
    p = params.rpn_head
    return _build(
        RpnHead,
        min_level=params.architecture.min_level,
        max_level=params.architecture.max_level,
        anchors_per_location=anchors_per_location(params, "rpn_head"),
        num_convs=p.num_convs,
        num_filters=p.num_filters,
        use_separable_conv=p.use_separable_conv,
        use_batch_norm=p.use_batch_norm,
        norm_activation=norm_activation_from_params(params),
        dtype=dtype,
        name="rpn_head",
    )


def fast_rcnn_head_from_params(params, dtype=None, name="fast_rcnn_head"):
    """A Fast R-CNN box head of the `frcnn_head` section (one per cascade stage)."""
    p = params.frcnn_head
    return _build(
        FastRCNNHead,
        num_classes=params.architecture.num_classes,
        num_convs=p.num_convs,
        num_filters=p.num_filters,
        use_separable_conv=p.use_separable_conv,
        num_fcs=p.num_fcs,
        fc_dims=p.fc_dims,
        use_batch_norm=p.use_batch_norm,
        norm_activation=norm_activation_from_params(params),
        class_agnostic_bbox_pred=p.class_agnostic_bbox_pred,
        dtype=dtype,
        name=name,
    )


def mask_head_from_params(params, dtype=None):
    """The mask head of the `mrcnn_head` section."""
    p = params.mrcnn_head
    return _build(
        MaskHead,
        num_classes=params.architecture.num_classes,
        num_convs=p.num_convs,
        num_filters=p.num_filters,
        use_separable_conv=p.use_separable_conv,
        use_batch_norm=p.use_batch_norm,
        norm_activation=norm_activation_from_params(params),
        class_agnostic_mask_pred=p.class_agnostic_mask_pred,
        dtype=dtype,
        name="mask_head",
    )


def load_shape_priors(path):
    """The shape prior array of `shapemask_head.shape_prior_path` (a .npy file), or None if ''.

    Raises:
      ParamsError: the file cannot be read as a NumPy array (the message names the path).
    """
    if not path:
        return None
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return np.load(f, allow_pickle=False)
    except (OSError, ValueError, tf.errors.OpError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ParamsError(
            f"shapemask_head.shape_prior_path={path!r}: cannot read a .npy array ({reason}); "
            "make one with python -m detection.tools.make_shape_priors"
        ) from None


def _shapemask_head_args(params):
    p = params.shapemask_head
    return dict(
        num_classes=params.architecture.num_classes,
        num_downsample_channels=p.num_downsample_channels,
        use_category_for_mask=p.use_category_for_mask,
    )


def shape_prior_head_from_params(params, dtype=None):
    """ShapeMask's shape prior head (`shapemask_head`, priors from `shape_prior_path`).

    Instance features are read from FPN levels `shapemask_parser.mask_min_level` to
    `mask_max_level`, which must lie within the architecture's levels.
    """
    parser = params.shapemask_parser
    architecture = params.architecture
    if not (
        architecture.min_level
        <= parser.mask_min_level
        <= parser.mask_max_level
        <= architecture.max_level
    ):
        raise ParamsError(
            f"shapemask_parser.mask_min_level={parser.mask_min_level} and mask_max_level="
            f"{parser.mask_max_level} must lie within architecture.min_level="
            f"{architecture.min_level} .. max_level={architecture.max_level}"
        )
    priors = load_shape_priors(params.shapemask_head.shape_prior_path)
    try:
        return ShapePriorHead(
            mask_crop_size=params.shapemask_head.mask_crop_size,
            shape_priors=priors,
            min_level=parser.mask_min_level,
            max_level=parser.mask_max_level,
            dtype=dtype,
            **_shapemask_head_args(params),
        )
    except ValueError as error:
        if isinstance(error, ParamsError):
            raise
        message = str(error).splitlines()[0]
        if priors is not None and "shape priors" in message:
            message += (
                f" in shapemask_head.shape_prior_path={params.shapemask_head.shape_prior_path!r}"
            )
        raise ParamsError(message) from None


def coarse_mask_head_from_params(params, dtype=None):
    """ShapeMask's coarse mask head (`shapemask_head`)."""
    try:
        return CoarseMaskHead(
            num_convs=params.shapemask_head.num_convs,
            norm_activation=norm_activation_from_params(params),
            dtype=dtype,
            **_shapemask_head_args(params),
        )
    except ValueError as error:
        if isinstance(error, ParamsError):
            raise
        raise ParamsError(f"shapemask_head: {str(error).splitlines()[0]}") from None


def fine_mask_head_from_params(params, dtype=None):
    """ShapeMask's fine mask head (`shapemask_head`)."""
    try:
        return FineMaskHead(
            num_convs=params.shapemask_head.num_convs,
            upsample_factor=params.shapemask_head.upsample_factor,
            norm_activation=norm_activation_from_params(params),
            dtype=dtype,
            **_shapemask_head_args(params),
        )
    except ValueError as error:
        if isinstance(error, ParamsError):
            raise
        raise ParamsError(f"shapemask_head: {str(error).splitlines()[0]}") from None
