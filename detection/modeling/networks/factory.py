"""Whole networks from the params tree: each family factory builds a part, this composes them."""

from detection.hyperparameters import ParamsError
from detection.modeling.backbones.factory import backbone_from_params
from detection.modeling.decoders.factory import decoder_from_params, pyramid_channels
from detection.modeling.heads.factory import (
    check_shared_head_channels,
    classification_head_from_params,
    coarse_mask_head_from_params,
    fast_rcnn_head_from_params,
    fine_mask_head_from_params,
    mask_head_from_params,
    retinanet_head_from_params,
    rpn_head_from_params,
    segmentation_head_from_params,
    shape_prior_head_from_params,
)
from detection.modeling.layers.aspp import Aspp
from detection.modeling.layers.factory import norm_activation_from_params
from detection.modeling.networks.classification_network import ClassificationNetwork
from detection.modeling.networks.maskrcnn_network import (
    MaskRCNNNetwork,
    ProposalSettings,
    RoiSamplingSettings,
)
from detection.modeling.networks.retinanet_network import RetinaNetNetwork
from detection.modeling.networks.segmentation_network import SegmentationNetwork
from detection.modeling.networks.shapemask_network import ShapeMaskNetwork
from detection.ops.postprocess import FastRCNNDetectionGenerator


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
        decoder_from_params(params, dtype),
        segmentation_head_from_params(params, dtype),
        aspp=aspp,
        fusion_level=level if architecture.use_pyramid_fusion else None,
        dtype=dtype,
    )


def cascade_iou_thresholds(params):
    """`roi_sampling.cascade_iou_thresholds` as a tuple (empty: no cascade), checked.

    Raises:
      ParamsError: thresholds outside (0, 1), or a cascade on the `mask_rcnn` type (the
        original's `mask_rcnn` model had no cascade; its `cascade_mask_rcnn` read the key).
    """
    thresholds = params.roi_sampling.cascade_iou_thresholds
    if thresholds is None:
        return ()
    if not isinstance(thresholds, (list, tuple)) or not all(
        isinstance(t, (int, float)) and 0.0 < t < 1.0 for t in thresholds
    ):
        raise ParamsError(
            f"roi_sampling.cascade_iou_thresholds={thresholds!r}: expected null or a list of "
            "IoU thresholds in (0, 1)"
        )
    if thresholds and params.type != "cascade_mask_rcnn":
        raise ParamsError(
            f"roi_sampling.cascade_iou_thresholds={list(thresholds)} needs type "
            f"cascade_mask_rcnn (--model=cascade_mask_rcnn), not {params.type}"
        )
    return tuple(float(t) for t in thresholds)


def _proposal_settings(p, prefix):
    return ProposalSettings(
        pre_nms_top_k=p[f"{prefix}rpn_pre_nms_top_k"],
        post_nms_top_k=p[f"{prefix}rpn_post_nms_top_k"],
        nms_iou_threshold=p[f"{prefix}rpn_nms_threshold"],
        score_threshold=p[f"{prefix}rpn_score_threshold"],
        min_size_threshold=p[f"{prefix}rpn_min_size_threshold"],
    )


def maskrcnn_network_from_params(params, anchor_boxes, dtype=None):
    """Backbone -> decoder -> RPN -> box head(s) [-> mask head] of (Cascade) Mask R-CNN.

    Args:
      params: a `mask_rcnn` / `cascade_mask_rcnn` ParamsDict.
      anchor_boxes: `{level: [h, w, A * 4]}` anchors of `maskrcnn_parser.output_size`.
      dtype: the dtype policy of the layers.

    Raises:
      ParamsError: a bad value of the heads, the cascade or the postprocess, or a backbone and
        decoder that do not give the RPN levels `min_level..max_level` of one channel count.
    """
    thresholds = cascade_iou_thresholds(params)
    architecture = params.architecture
    s = params.roi_sampling
    sampling = RoiSamplingSettings(
        num_samples_per_image=s.num_samples_per_image,
        fg_fraction=s.fg_fraction,
        fg_iou_thresh=s.fg_iou_thresh,
        bg_iou_thresh_hi=s.bg_iou_thresh_hi,
        bg_iou_thresh_lo=s.bg_iou_thresh_lo,
        mix_gt_boxes=s.mix_gt_boxes,
        cascade_iou_thresholds=thresholds,
        num_mask_samples_per_image=params.mask_sampling.num_mask_samples_per_image,
    )
    # One box head per stage; the original named them frcnn_layer_<stage>.
    box_heads = [
        fast_rcnn_head_from_params(params, dtype, name=f"frcnn_layer_{stage}")
        for stage in range(1 + len(thresholds))
    ]
    p = params.postprocess
    try:
        generator = FastRCNNDetectionGenerator(
            max_total_size=p.max_total_size,
            nms_iou_threshold=p.nms_iou_threshold,
            score_threshold=p.score_threshold,
            pre_nms_num_boxes=p.pre_nms_num_boxes,
            apply_nms=p.apply_nms,
        )
        backbone = backbone_from_params(params, dtype)
        decoder = decoder_from_params(params, dtype)
        check_shared_head_channels(pyramid_channels(params, backbone, decoder), "rpn_head", params)
        return MaskRCNNNetwork(
            backbone=backbone,
            fpn=decoder,
            rpn_head=rpn_head_from_params(params, dtype),
            box_heads=box_heads,
            mask_head=mask_head_from_params(params, dtype) if architecture.include_mask else None,
            detection_generator=generator,
            anchor_boxes=anchor_boxes,
            min_level=architecture.min_level,
            max_level=architecture.max_level,
            train_proposals=_proposal_settings(params.roi_proposal, ""),
            test_proposals=_proposal_settings(params.roi_proposal, "test_"),
            roi_sampling_settings=sampling,
            mask_target_size=architecture.mask_target_size,
            class_ensemble=params.frcnn_head.cascade_class_ensemble,
            dtype=dtype,
        )
    except ValueError as error:
        if isinstance(error, ParamsError):
            raise
        raise ParamsError(str(error).splitlines()[0]) from None


def shapemask_network_from_params(params, dtype=None):
    """RetinaNet's backbone, decoder and head plus ShapeMask's three mask heads.

    Raises:
      ParamsError: the backbone and decoder do not give the heads levels
        `min_level..max_level` of one channel count; raised before any weight is created.
    """
    backbone = backbone_from_params(params, dtype)
    decoder = decoder_from_params(params, dtype)
    check_shared_head_channels(
        pyramid_channels(params, backbone, decoder), "retinanet_head", params
    )
    return ShapeMaskNetwork(
        backbone,
        decoder,
        retinanet_head_from_params(params, dtype),
        shape_prior_head_from_params(params, dtype),
        coarse_mask_head_from_params(params, dtype),
        fine_mask_head_from_params(params, dtype),
        dtype=dtype,
    )
