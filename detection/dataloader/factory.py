"""Builds parsers and input functions from the params tree (the dataloader's one factory).

To add a parser: write it (a `base_parser.DetectionParser` subclass for detection), add a
builder `_name(params, mode)` below and list it in `_PARSERS` under its `architecture.parser`.
"""

from detection.core.modes import TRAIN
from detection.dataloader.augment import factory as augment_factory
from detection.dataloader.classification_parser import ClassificationParser
from detection.dataloader.copy_paste import CopyPaste
from detection.dataloader.extract_objects_parser import ExtractObjectsParser
from detection.dataloader.input_reader import InputReader
from detection.dataloader.maskrcnn_parser import MaskRCNNParser
from detection.dataloader.retinanet_parser import RetinaNetParser
from detection.dataloader.segmentation_parser import SegmentationParser
from detection.dataloader.shapemask_parser import ShapeMaskParser
from detection.hyperparameters import ParamsError, registry
from detection.ops import class_splits
from detection.ops.anchors import Anchors


def anchors_from_params(params, output_size):
    """The Anchors of the architecture's levels for a network input of `output_size`."""
    return Anchors(
        params.architecture.min_level,
        params.architecture.max_level,
        params.anchor.num_scales,
        params.anchor.aspect_ratios,
        params.anchor.anchor_size,
        output_size,
    )


def _detection_parser_args(p, params, mode, section_name):
    """The `DetectionParser` arguments shared by the detection parsers' sections.

    The section's `aug_policy` (when it has the key) becomes the parser's augmentation
    policy in training; an unknown policy is a ParamsError (in every mode) listing the
    policies.
    """
    is_training = mode == TRAIN
    augmentation = augment_factory.detection_augmentation_from_params(p, section_name)
    return dict(
        output_size=p.output_size,
        num_classes=params.architecture.num_classes,
        is_training=is_training,
        aug_rand_hflip=p.aug_rand_hflip,
        aug_scale_min=p.aug_scale_min,
        aug_scale_max=p.aug_scale_max,
        skip_crowd_during_training=p.skip_crowd_during_training,
        max_num_instances=p.max_num_instances,
        # Not every parser section has the key (the original's shapemask_parser lacks it).
        regenerate_source_id=p.get("regenerate_source_id", False),
        autoaugment=augmentation if is_training else None,
    )


def _retinanet_parser(params, mode):
    p = params.retinanet_parser
    return RetinaNetParser(
        anchors=anchors_from_params(params, p.output_size),
        match_threshold=p.match_threshold,
        unmatched_threshold=p.unmatched_threshold,
        **_detection_parser_args(p, params, mode, "retinanet_parser"),
    )


def _maskrcnn_parser(params, mode):
    p = params.maskrcnn_parser
    return MaskRCNNParser(
        anchors=anchors_from_params(params, p.output_size),
        rpn_match_threshold=p.rpn_match_threshold,
        rpn_unmatched_threshold=p.rpn_unmatched_threshold,
        rpn_batch_size_per_im=p.rpn_batch_size_per_im,
        rpn_fg_fraction=p.rpn_fg_fraction,
        include_mask=params.architecture.include_mask,
        mask_crop_size=p.mask_crop_size,
        copy_paste=CopyPaste(p.max_num_instances) if p.copy_paste else None,
        **_detection_parser_args(p, params, mode, "maskrcnn_parser"),
    )


def _shapemask_parser(params, mode):
    p = params.shapemask_parser
    try:
        train_ids = class_splits.split_category_ids(
            p.mask_train_class, "shapemask_parser.mask_train_class"
        )
        return ShapeMaskParser(
            anchors=anchors_from_params(params, p.output_size),
            match_threshold=p.match_threshold,
            unmatched_threshold=p.unmatched_threshold,
            use_category=p.use_category,
            outer_box_scale=p.outer_box_scale,
            box_jitter_scale=p.box_jitter_scale,
            num_sampled_masks=p.num_sampled_masks,
            mask_crop_size=p.mask_crop_size,
            upsample_factor=p.upsample_factor,
            mask_train_class_ids=train_ids,
            **_detection_parser_args(p, params, mode, "shapemask_parser"),
        )
    except ParamsError:
        raise
    except ValueError as error:
        raise ParamsError(str(error)) from None


def _extract_objects_parser(params):
    # The objects to paste are prepared as the training images (the Mask R-CNN parser's
    # output size, jitter, flip, crowd skipping, mask crops), without an augmentation policy.
    p = params.maskrcnn_parser
    args = _detection_parser_args(p, params, TRAIN, "maskrcnn_parser")
    for key in ("is_training", "autoaugment"):
        del args[key]
    return ExtractObjectsParser(mask_crop_size=p.mask_crop_size, **args)


def _classification_parser(params, mode):
    p = params.classification_parser
    # Built in every mode so that a bad policy fails in eval too; applied in training only.
    augmentation = augment_factory.image_augmentation_from_params(p, "classification_parser")
    return ClassificationParser(
        output_size=p.output_size,
        num_classes=params.architecture.num_classes,
        is_training=mode == TRAIN,
        aug_rand_hflip=p.aug_rand_hflip,
        autoaugment=augmentation if mode == TRAIN else None,
    )


def _segmentation_parser(params, mode):
    p = params.segmentation_parser
    return SegmentationParser(
        output_size=p.output_size,
        num_classes=params.architecture.num_classes,
        is_training=mode == TRAIN,
        resize_eval=p.resize_eval,
        ignore_label=p.ignore_label,
        aug_rand_hflip=p.aug_rand_hflip,
        aug_scale_min=p.aug_scale_min,
        aug_scale_max=p.aug_scale_max,
        autoaugment=augment_factory.label_map_augmentation_from_params(
            p, "segmentation_parser", p.ignore_label
        )
        if mode == TRAIN
        else None,
    )


_PARSERS = {
    "retinanet_parser": _retinanet_parser,
    "maskrcnn_parser": _maskrcnn_parser,
    "shapemask_parser": _shapemask_parser,
    "classification_parser": _classification_parser,
    "segmentation_parser": _segmentation_parser,
}


# `architecture.pre_parser`: parsers of a second training stream whose elements the main
# parser takes with each record (the original's name for copy-paste's objects).
_PRE_PARSERS = {"extract_objects_parser": _extract_objects_parser}


def _copy_paste_enabled(params):
    """`<parser>.copy_paste`, checked against `architecture.pre_parser` (both or neither)."""
    pre_parser = params.architecture.pre_parser
    if pre_parser:
        registry.lookup(_PRE_PARSERS, pre_parser, "architecture.pre_parser")
    section_name = params.architecture.parser
    section = params.get(section_name) if section_name else None
    copy_paste = bool(section.get("copy_paste", False)) if section is not None else False
    if copy_paste and not pre_parser:
        raise ParamsError(
            f"{section_name}.copy_paste=True needs architecture.pre_parser: "
            "extract_objects_parser (and train.pre_parser_dataset.file_pattern), the stream of "
            "objects to paste"
        )
    if pre_parser and not copy_paste:
        raise ParamsError(
            f"architecture.pre_parser={pre_parser!r} feeds copy-paste, which "
            f"architecture.parser={section_name!r} does not do; set maskrcnn_parser.copy_paste: "
            "true with the Mask R-CNN parser, or architecture.pre_parser: null"
        )
    return copy_paste


def parser_from_params(params, mode):
    """The parser named by `architecture.parser`, for `mode` (train / eval / predict).

    With copy-paste, the training parser takes `(record, objects to paste)`.
    """
    builder = registry.lookup(_PARSERS, params.architecture.parser, "architecture.parser")
    _copy_paste_enabled(params)
    return builder(params, mode)


def _objects_to_paste_fn(params, deterministic):
    """`input_context -> endless dataset` of the pre-parser's objects (copy-paste)."""
    dataset = params.train.pre_parser_dataset
    if not dataset.file_pattern:
        raise ParamsError(
            "train.pre_parser_dataset.file_pattern is empty: copy-paste reads the objects to "
            "paste from these TFRecord files (they may be train.train_file_pattern's)"
        )
    if dataset.dataset_type != "tfrecord":
        raise ParamsError(
            f"train.pre_parser_dataset.dataset_type={dataset.dataset_type!r}: this dataset type "
            "is not readable outside Google; convert the data to TFRecords and set it to tfrecord"
        )
    builder = registry.lookup(
        _PRE_PARSERS, params.architecture.pre_parser, "architecture.pre_parser"
    )
    reader = InputReader(
        dataset.file_pattern,
        builder(params),
        is_training=True,
        batch_size=1,
        deterministic=deterministic,
        # Not the main stream's shuffle seed: with the same files, that would pair every
        # image with itself.
        seed=1 if deterministic else None,
    )
    return reader.parsed


def input_fn_from_params(params, mode, deterministic=False):
    """Returns `dataset_fn(input_context) -> tf.data.Dataset` of per-replica batches.

    The global batch (`train.train_batch_size` or `eval.eval_batch_size`) is split evenly
    across the replicas that `input_context` describes; each host reads its own shard of files.
    """
    if mode == TRAIN:
        file_pattern, global_batch = params.train.train_file_pattern, params.train.train_batch_size
        dataset_type, key = params.train.train_dataset_type, "train.train_file_pattern"
        type_key = "train.train_dataset_type"
    else:
        file_pattern, global_batch = params.eval.eval_file_pattern, params.eval.eval_batch_size
        dataset_type, key = params.eval.eval_dataset_type, "eval.eval_file_pattern"
        type_key = "eval.eval_dataset_type"
    if not file_pattern:
        raise ParamsError(f"{key} is empty: set it to the TFRecord files to read")
    if dataset_type != "tfrecord":
        raise ParamsError(
            f"{type_key}={dataset_type!r}: this dataset type is not readable outside Google; "
            f"convert the data to TFRecords and set {type_key}: tfrecord"
        )
    parser = parser_from_params(params, mode)
    paired_dataset_fn = None
    if mode == TRAIN and _copy_paste_enabled(params):
        paired_dataset_fn = _objects_to_paste_fn(params, deterministic)

    def dataset_fn(input_context=None):
        batch_size = global_batch
        if input_context is not None:
            batch_size = input_context.get_per_replica_batch_size(global_batch)
        reader = InputReader(
            file_pattern,
            parser,
            is_training=mode == TRAIN,
            batch_size=batch_size,
            deterministic=deterministic,
            paired_dataset_fn=paired_dataset_fn,
        )
        return reader(input_context)

    return dataset_fn
