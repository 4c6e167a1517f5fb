"""Builds parsers and input functions from the params tree (the dataloader's one factory).

To add a parser: write it (a `base_parser.DetectionParser` subclass for detection), add a
builder `_name(params, mode)` below and list it in `_PARSERS` under its `architecture.parser`.
"""

from detection.core.modes import TRAIN
from detection.dataloader.augment import factory as augment_factory
from detection.dataloader.classification_parser import ClassificationParser
from detection.dataloader.input_reader import InputReader
from detection.dataloader.maskrcnn_parser import MaskRCNNParser
from detection.dataloader.retinanet_parser import RetinaNetParser
from detection.hyperparameters import ParamsError, registry
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
        regenerate_source_id=p.regenerate_source_id,
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
    if p.copy_paste:
        raise ParamsError(
            f"maskrcnn_parser.copy_paste={p.copy_paste!r}: copy-paste "
            "augmentation is not implemented yet; set it to false"
        )
    return MaskRCNNParser(
        anchors=anchors_from_params(params, p.output_size),
        rpn_match_threshold=p.rpn_match_threshold,
        rpn_unmatched_threshold=p.rpn_unmatched_threshold,
        rpn_batch_size_per_im=p.rpn_batch_size_per_im,
        rpn_fg_fraction=p.rpn_fg_fraction,
        include_mask=params.architecture.include_mask,
        mask_crop_size=p.mask_crop_size,
        **_detection_parser_args(p, params, mode, "maskrcnn_parser"),
    )


def _classification_parser(params, mode):
    p = params.classification_parser
    return ClassificationParser(
        output_size=p.output_size,
        num_classes=params.architecture.num_classes,
        is_training=mode == TRAIN,
        aug_rand_hflip=p.aug_rand_hflip,
    )


_PARSERS = {
    "retinanet_parser": _retinanet_parser,
    "maskrcnn_parser": _maskrcnn_parser,
    "classification_parser": _classification_parser,
}


def parser_from_params(params, mode):
    """The parser named by `architecture.parser`, for `mode` (train / eval / predict)."""
    builder = registry.lookup(_PARSERS, params.architecture.parser, "architecture.parser")
    return builder(params, mode)


def input_fn_from_params(params, mode, deterministic=False):
    """Returns `dataset_fn(input_context) -> tf.data.Dataset` of per-replica batches.

    The global batch (`train.train_batch_size` or `eval.eval_batch_size`) is split evenly
    across the replicas that `input_context` describes; each host reads its own shard of files.
    """
    if mode == TRAIN:
        file_pattern, global_batch = params.train.train_file_pattern, params.train.train_batch_size
        dataset_type, key = params.train.train_dataset_type, "train.train_file_pattern"
    else:
        file_pattern, global_batch = params.eval.eval_file_pattern, params.eval.eval_batch_size
        dataset_type, key = params.eval.eval_dataset_type, "eval.eval_file_pattern"
    if not file_pattern:
        raise ParamsError(f"{key} is empty: set it to the TFRecord files to read")
    if dataset_type != "tfrecord":
        raise ParamsError(
            f"dataset type {dataset_type!r} is not readable outside Google; "
            "convert the data to TFRecords and set the dataset type to 'tfrecord'"
        )
    parser = parser_from_params(params, mode)

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
        )
        return reader(input_context)

    return dataset_fn
