"""Builds the `aug_policy` augmentation of a parser section (the augment package's factory).

    aug_policy: ''              no augmentation
    aug_policy: v0 | v1 | v2 | v3 | test
                                an AutoAugment detection policy (policies.POLICIES)
    aug_policy: randaugment     RandAugment, `randaug_num_layers` ops at `randaug_magnitude`

Detection parsers take the policy's own call, `(image, boxes, masks) -> (image, boxes, masks,
indices)`; the classification parser takes an image-only callable
(`image_augmentation_from_params`: RandAugment only, the detection policies need boxes); a
segmentation parser takes `(image, label map) -> (image, label map)`
(`label_map_augmentation_from_params`). `randaugment` is offered only to sections that have
the `randaug_*` keys.
"""

import tensorflow as tf

from detection.dataloader.augment import autoaugment
from detection.dataloader.augment import policies
from detection.dataloader.augment import randaugment
from detection.hyperparameters import ParamsError

RANDAUGMENT = "randaugment"
DETECTION_POLICIES = tuple(policies.POLICIES) + (RANDAUGMENT,)
IMAGE_POLICIES = (RANDAUGMENT,)


def _choices(names):
    return ", ".join(["'' (none)"] + [repr(name) for name in names])


def _randaugment(section, section_name):
    try:
        return randaugment.RandAugment(
            num_layers=section.randaug_num_layers, magnitude=section.randaug_magnitude
        )
    except ValueError as error:
        raise ParamsError(
            f"{section_name}.randaug_num_layers={section.randaug_num_layers!r}, "
            f"{section_name}.randaug_magnitude={section.randaug_magnitude!r}: {error}"
        ) from None


def _policy_name(section, section_name, choices):
    if "randaug_num_layers" not in section:
        choices = tuple(name for name in choices if name != RANDAUGMENT)
    name = section.get("aug_policy", "")
    if name and name not in choices:
        raise ParamsError(
            f"{section_name}.aug_policy={name!r} is not implemented; available: {_choices(choices)}"
        )
    return name


def detection_augmentation_from_params(section, section_name):
    """The augmentation of a detection parser section, or None for `aug_policy: ''`.

    Args:
      section: the parser's ParamsDict (`params.retinanet_parser`...). A section without an
        `aug_policy` key gets no augmentation.
      section_name: its key, for error messages.

    Returns:
      None, or a callable `(image [h, w, 3] uint8, boxes [n, 4] normalized, masks [n, h, w] or
      None) -> (image, boxes [m, 4], masks [m, h, w] or None, indices [m] int32)`: boxes pushed
      out of the image are dropped, `indices` are the input rows kept (see docs/augmentation.md).

    Raises:
      ParamsError: an unknown policy (the message lists the policies) or RandAugment
        parameters out of range.
    """
    name = _policy_name(section, section_name, DETECTION_POLICIES)
    if not name:
        return None
    if name == RANDAUGMENT:
        return _randaugment(section, section_name).augment_detection
    return autoaugment.build_policy(name)


def image_augmentation_from_params(section, section_name):
    """The augmentation of an image-only parser (classification), or None for `''`.

    Returns:
      None, or a callable `image [h, w, 3] uint8 -> image [h, w, 3] uint8` (RandAugment).

    Raises:
      ParamsError: a policy other than '' or 'randaugment' (the AutoAugment detection
        policies move boxes), or RandAugment parameters out of range.
    """
    name = _policy_name(section, section_name, IMAGE_POLICIES)
    if not name:
        return None
    return _randaugment(section, section_name)


def label_map_augmentation(augmentation, ignore_label):
    """A detection augmentation applied to an image and its label map (segmentation).

    The label map moves with the image as one instance mask over a whole-image box: the
    geometric ops warp it with the pixels (nearest neighbour), pixels they uncover become
    `ignore_label`, and colour ops, cutouts and in-box colour ops leave it unchanged.

    Args:
      augmentation: `(image, boxes, masks) -> (image, boxes, masks, indices)`, as
        `detection_augmentation_from_params` returns.
      ignore_label: the label of pixels without a label.

    Returns:
      A callable `(image [h, w, 3] uint8, label map [h, w] integer) -> (image [h, w, 3] uint8,
      label map [h, w] int32)`.
    """
    whole_image = tf.constant([[0.0, 0.0, 1.0, 1.0]])

    def augment(image, label_map):
        # Labels + 1 as a float mask: the ops fill uncovered mask pixels with 0.
        shifted = tf.cast(label_map, tf.float32)[None] + 1.0
        image, _, masks, _ = augmentation(image, whole_image, shifted)
        # masks is [0, h, w] only when a translation pushed the whole image out of the frame.
        labels = tf.cast(tf.reduce_max(tf.concat([tf.zeros_like(shifted), masks], 0), 0), tf.int32)
        return image, tf.where(labels > 0, labels - 1, ignore_label)

    return augment


def label_map_augmentation_from_params(section, section_name, ignore_label):
    """The augmentation of a segmentation parser section (`label_map_augmentation` of its
    `aug_policy`), or None for `aug_policy: ''`.

    Raises:
      ParamsError: as `detection_augmentation_from_params`.
    """
    augmentation = detection_augmentation_from_params(section, section_name)
    if augmentation is None:
        return None
    return label_map_augmentation(augmentation, ignore_label)
