"""Image classification parser: tf.Example -> ({'images'}, {'classes'}) with static shapes.

Evaluation labels also carry `groundtruths: {'classes'}`, which the executor hands to the
accuracy evaluator.

Training: Inception-style random-size crop (area 8%-100% of the image, aspect ratio 3/4-4/3;
a centre crop when no window is found), resize to `output_size`, random horizontal flip.
Evaluation: centred crop with the standard 32-pixel crop padding, resize to `output_size`.
Both normalize with the ImageNet mean/stddev of `preprocess_ops.normalize_image`.
"""

import tensorflow as tf

from detection.dataloader import preprocess_ops
from detection.dataloader.tf_example_decoder import TfExampleClassificationDecoder

AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
CROP_PADDING = 32


class ClassificationParser:
    """Callable `serialized tf.Example -> (features, labels)` for one mode.

    Output: features {'images': [out_h, out_w, 3] float32}, labels {'classes': [] int32}.
    """

    def __init__(
        self,
        output_size,
        num_classes,
        is_training,
        aug_rand_hflip=True,
        crop_padding=CROP_PADDING,
        seed=None,
        autoaugment=None,
    ):
        """Builds the parser.

        Args:
          output_size: (height, width) of the network input.
          num_classes: labels must lie in [0, num_classes); others are an error.
          is_training: random crop and flip (training) or centre crop (evaluation).
          aug_rand_hflip: random horizontal flip in training.
          crop_padding: evaluation crop padding in pixels of the output scale.
          seed: optional op seed of the random crop and flip.
          autoaugment: optional callable (uint8 image [h, w, 3]) -> uint8 image applied to the
            decoded image in training, before the crop (an augmentation policy's hook).
        """
        self._output_size = [int(output_size[0]), int(output_size[1])]
        self._num_classes = int(num_classes)
        self._is_training = is_training
        self._aug_rand_hflip = aug_rand_hflip
        self._crop_padding = crop_padding
        self._seed = seed
        self._autoaugment = autoaugment
        self._decoder = TfExampleClassificationDecoder()

    def _check_label(self, label):
        in_range = tf.logical_and(label >= 0, label < self._num_classes)
        return tf.debugging.Assert(
            in_range,
            [
                "image/class/label outside [0, architecture.num_classes="
                f"{self._num_classes}); label:",
                label,
            ],
        )

    def __call__(self, serialized):
        decoded = self._decoder.decode(serialized)
        image = decoded["image"]
        if self._is_training and self._autoaugment is not None:
            image = self._autoaugment(image)
        image_size = tf.shape(image)[:2]
        center = preprocess_ops.center_crop_window(
            image_size, self._output_size, self._crop_padding
        )
        if self._is_training:
            offset, size = preprocess_ops.random_crop_window(
                image_size, AREA_RANGE, ASPECT_RATIO_RANGE, seed=self._seed
            )
            # sample_distorted_bounding_box returns the whole image when it finds no window;
            # the standard recipe then falls back to the evaluation crop.
            failed = tf.reduce_all(tf.equal(size, image_size))
            offset, size = tf.cond(failed, lambda: center, lambda: (offset, size))
        else:
            offset, size = center
        image = preprocess_ops.crop_and_resize_image(image, offset, size, self._output_size)
        if self._is_training and self._aug_rand_hflip:
            image, _, _ = preprocess_ops.random_horizontal_flip(
                image, tf.zeros([0, 4]), seed=self._seed
            )
        image = preprocess_ops.normalize_image(image)
        with tf.control_dependencies([self._check_label(decoded["label"])]):
            label = tf.cast(decoded["label"], tf.int32)
        labels = {"classes": label}
        if not self._is_training:
            labels["groundtruths"] = {"classes": label}
        return {"images": image}, labels
