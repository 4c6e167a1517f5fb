"""Decodes serialized tf.Example protos (COCO-style detection, classification or semantic
segmentation records).

Detection records use the keys of `detection/tools/create_coco_tfrecord.py` (the TF Object
Detection API / Model Garden keys). Optional keys fall back to defaults, so records written by
other converters decode too.
"""

import tensorflow as tf


def _decode_png_masks(masks_png, height, width):
    """Decodes PNG instance masks to float32 0/1 masks `[num_instances, height, width]`."""

    def decode_one(png):
        mask = tf.io.decode_png(png, channels=1)[:, :, 0]
        # Converters differ on the foreground value (1 or 255); anything non-zero is foreground.
        return tf.cast(tf.greater(mask, 0), tf.float32)

    return tf.cond(
        tf.greater(tf.size(masks_png), 0),
        lambda: tf.map_fn(decode_one, masks_png, fn_output_signature=tf.float32),
        lambda: tf.zeros([0, height, width], tf.float32),
    )


class TfExampleDecoder:
    """Decodes a COCO-style detection tf.Example into a dict of tensors.

    `decode(serialized)` returns (n = number of instances, h/w = image size):
      image: [h, w, 3] uint8 (JPEG or PNG).
      source_id: [] int64, `image/source_id` parsed as a number; with regenerate_source_id, a
        63-bit hash of the encoded image bytes instead (for records without usable ids).
      height, width: [] int64, from `image/height|width`, else the decoded image's size.
      groundtruth_classes: [n] int64 (`image/object/class/label`).
      groundtruth_is_crowd: [n] bool (False when the key is absent).
      groundtruth_area: [n] float32 in pixels (box area in pixels when the key is absent).
      groundtruth_boxes: [n, 4] float32 normalized [ymin, xmin, ymax, xmax].
      groundtruth_instance_masks: [n, h, w] float32 0/1 (include_mask only).
      groundtruth_instance_masks_png: [n] string, the encoded masks (include_mask only).
    """

    def __init__(self, include_mask=False, regenerate_source_id=False):
        self._include_mask = include_mask
        self._regenerate_source_id = regenerate_source_id
        self._keys_to_features = {
            "image/encoded": tf.io.FixedLenFeature((), tf.string),
            "image/source_id": tf.io.FixedLenFeature((), tf.string, default_value=""),
            "image/height": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
            "image/width": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
            "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
            "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
            "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
            "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
            "image/object/class/label": tf.io.VarLenFeature(tf.int64),
            "image/object/area": tf.io.VarLenFeature(tf.float32),
            "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
        }
        if include_mask:
            self._keys_to_features["image/object/mask"] = tf.io.VarLenFeature(tf.string)

    def _parse(self, serialized):
        parsed = tf.io.parse_single_example(serialized, self._keys_to_features)
        for key, value in parsed.items():
            if isinstance(value, tf.SparseTensor):
                default = "" if value.dtype == tf.string else 0
                parsed[key] = tf.sparse.to_dense(value, default_value=default)
        return parsed

    def _decode_source_id(self, parsed):
        if self._regenerate_source_id:
            return tf.strings.to_hash_bucket_fast(parsed["image/encoded"], 2**63 - 1)
        source_id = parsed["image/source_id"]
        check = tf.debugging.assert_greater(
            tf.strings.length(source_id),
            0,
            message="image/source_id is missing or empty; use regenerate_source_id=True",
        )
        with tf.control_dependencies([check]):
            return tf.strings.to_number(source_id, tf.int64)

    def decode(self, serialized):
        """Decodes one serialized tf.Example (a scalar string tensor); see the class docstring."""
        parsed = self._parse(serialized)
        image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        image_shape = tf.shape(image, out_type=tf.int64)
        height = tf.where(parsed["image/height"] > 0, parsed["image/height"], image_shape[0])
        width = tf.where(parsed["image/width"] > 0, parsed["image/width"], image_shape[1])

        boxes = tf.stack(
            [
                parsed["image/object/bbox/ymin"],
                parsed["image/object/bbox/xmin"],
                parsed["image/object/bbox/ymax"],
                parsed["image/object/bbox/xmax"],
            ],
            axis=-1,
        )
        classes = parsed["image/object/class/label"]
        num_instances = tf.shape(classes)[0]
        # Extra labels would silently pair with other boxes (or with none).
        consistent = tf.debugging.Assert(
            tf.logical_and(
                tf.equal(num_instances, tf.shape(boxes)[0]),
                tf.reduce_all(tf.math.is_finite(boxes)),
            ),
            [
                "the labels and boxes of the record with image/source_id",
                parsed["image/source_id"],
                "disagree (number of labels, boxes:",
                num_instances,
                tf.shape(boxes)[0],
                ") or a box coordinate is not finite",
            ],
        )
        with tf.control_dependencies([consistent]):
            classes, boxes = tf.identity(classes), tf.identity(boxes)

        is_crowd = parsed["image/object/is_crowd"]
        is_crowd = tf.cond(
            tf.greater(tf.size(is_crowd), 0),
            lambda: tf.cast(is_crowd, tf.bool),
            lambda: tf.zeros([num_instances], tf.bool),
        )
        area = parsed["image/object/area"]
        box_area = (
            (boxes[:, 2] - boxes[:, 0])
            * (boxes[:, 3] - boxes[:, 1])
            * tf.cast(height * width, tf.float32)
        )
        area = tf.cond(tf.greater(tf.size(area), 0), lambda: area, lambda: box_area)

        decoded = {
            "image": image,
            "source_id": self._decode_source_id(parsed),
            "height": height,
            "width": width,
            "groundtruth_classes": classes,
            "groundtruth_is_crowd": is_crowd,
            "groundtruth_area": area,
            "groundtruth_boxes": boxes,
        }
        if self._include_mask:
            masks_png = parsed["image/object/mask"]
            decoded["groundtruth_instance_masks"] = _decode_png_masks(
                masks_png, image_shape[0], image_shape[1]
            )
            decoded["groundtruth_instance_masks_png"] = masks_png
        return decoded


class TfExampleClassificationDecoder:
    """Decodes an image classification tf.Example (`image/encoded`, `image/class/label`).

    `decode(serialized)` returns:
      image: [h, w, 3] uint8 (JPEG or PNG).
      label: [] int64, `image/class/label` (ImageNet records count background as 0).
    """

    def __init__(self):
        self._keys_to_features = {
            "image/encoded": tf.io.FixedLenFeature((), tf.string),
            "image/class/label": tf.io.FixedLenFeature((), tf.int64),
        }

    def decode(self, serialized):
        parsed = tf.io.parse_single_example(serialized, self._keys_to_features)
        image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return {"image": image, "label": parsed["image/class/label"]}


class TfExampleSegmentationDecoder:
    """Decodes a semantic segmentation tf.Example (`image/encoded`,
    `image/segmentation/class/encoded`: a single-channel PNG of class ids, as written by
    `detection/tools/create_segmentation_tfrecord.py` and the TF Model Garden converters).

    `decode(serialized)` returns:
      image: [h, w, 3] uint8.
      label_map: [h, w] int32 class ids (the label image's first channel).
    A label map of another size than the image is an error.
    """

    def __init__(self):
        self._keys_to_features = {
            "image/encoded": tf.io.FixedLenFeature((), tf.string),
            "image/segmentation/class/encoded": tf.io.FixedLenFeature((), tf.string),
        }

    def decode(self, serialized):
        parsed = tf.io.parse_single_example(serialized, self._keys_to_features)
        image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        label = tf.io.decode_png(parsed["image/segmentation/class/encoded"], channels=1)
        check = tf.debugging.assert_equal(
            tf.shape(label)[:2],
            tf.shape(image)[:2],
            message="image/segmentation/class/encoded has another size than image/encoded",
        )
        with tf.control_dependencies([check]):
            label_map = tf.cast(label[:, :, 0], tf.int32)
        return {"image": image, "label_map": label_map}
