"""The four serving input types of the original framework, and what `--input_image_size` means.

- `raw_image_tensor`: float32 `[b, h, w, 3]`, already normalized; padded bottom/right to the
  network size, never resized.
- `image_tensor`: uint8 `[b, h, w, 3]`; the evaluation preprocessing per image.
- `image_bytes`: string `[b]`, encoded JPEG / PNG / GIF / BMP; decoded, then as `image_tensor`.
- `tf_example`: string `[b]`, serialized tf.Example; its `image/encoded` decoded, then as
  `image_tensor`.

The *network input size* `(H, W)` is the parser's `output_size` in the params (change it with
`--params_override`); anchors are built for it. `--input_image_size h,w` is the spatial shape of
the signature's image tensor (`raw_image_tensor`, `image_tensor`): by default the network size;
`None,None` accepts any size. Raw images must fit in the network input (`h <= H`, `w <= W`).
Encoded inputs have any size, so for `image_bytes` / `tf_example` the flag may only repeat the
network size. `--batch_size None` makes the batch dimension dynamic.
"""

import dataclasses

import tensorflow as tf

from detection.serving import preprocessing

RAW_IMAGE_TENSOR = "raw_image_tensor"
IMAGE_TENSOR = "image_tensor"
IMAGE_BYTES = "image_bytes"
TF_EXAMPLE = "tf_example"
INPUT_TYPES = (RAW_IMAGE_TENSOR, IMAGE_TENSOR, IMAGE_BYTES, TF_EXAMPLE)
TENSOR_INPUT_TYPES = (RAW_IMAGE_TENSOR, IMAGE_TENSOR)


def parse_image_size(text):
    """'H,W' -> (H, W) ints > 0; 'None,None' -> (None, None).

    Raises:
      ValueError: anything else (the message names the flag and the value).
    """
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) == 2 and parts == ["None", "None"]:
        return (None, None)
    if len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts):
        return (int(parts[0]), int(parts[1]))
    raise ValueError(
        f"--input_image_size={text!r}: expected two positive integers 'height,width' or 'None,None'"
    )


def parse_batch_size(text):
    """'N' -> N > 0; 'None' -> None (dynamic batch).

    Raises:
      ValueError: anything else.
    """
    text = str(text).strip()
    if text == "None":
        return None
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError(f"--batch_size={text!r}: expected a positive integer or None")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The serving signature's input.

    Attributes:
      input_type: one of INPUT_TYPES.
      batch_size: int, or None for a dynamic batch.
      image_size: (h, w) of tensor inputs, (None, None) for any size; None for string inputs.
      name: the signature's input name.
    """

    input_type: str
    batch_size: int | None
    image_size: tuple | None
    name: str = "input"

    def tensor_spec(self):
        """The `tf.TensorSpec` of the signature input."""
        if self.input_type == RAW_IMAGE_TENSOR:
            return tf.TensorSpec([self.batch_size, *self.image_size, 3], tf.float32, self.name)
        if self.input_type == IMAGE_TENSOR:
            return tf.TensorSpec([self.batch_size, *self.image_size, 3], tf.uint8, self.name)
        return tf.TensorSpec([self.batch_size], tf.string, self.name)


def resolve_input_spec(input_type, batch_size, image_size, network_size, name="input"):
    """Checks the input flags against each other and the network size.

    Args:
      input_type: one of INPUT_TYPES.
      batch_size: int > 0 or None.
      image_size: (h, w), (None, None), or None for the default (the network size).
      network_size: (H, W) of the network input.
      name: the signature's input name.

    Raises:
      ValueError: an unknown input type, or an image size the input type cannot take.
    """
    if input_type not in INPUT_TYPES:
        raise ValueError(f"--input_type={input_type!r}: expected one of {', '.join(INPUT_TYPES)}")
    network_size = (int(network_size[0]), int(network_size[1]))
    if not name:
        raise ValueError("--input_name must not be empty")
    if input_type in TENSOR_INPUT_TYPES:
        size = network_size if image_size is None else tuple(image_size)
        too_large = size[0] is not None and (size[0] > network_size[0] or size[1] > network_size[1])
        if input_type == RAW_IMAGE_TENSOR and too_large:
            raise ValueError(
                f"--input_image_size={size[0]},{size[1]}: raw_image_tensor images are not "
                f"resized, so they must fit in the network input {network_size[0]},"
                f"{network_size[1]} (the parser's output_size)"
            )
        return InputSpec(input_type, batch_size, size, name)
    if image_size is not None and tuple(image_size) != network_size:
        raise ValueError(
            f"--input_image_size={image_size[0]},{image_size[1]} with --input_type={input_type}: "
            "encoded images of any size are resized to the network input "
            f"{network_size[0]},{network_size[1]}; change that with the parser's output_size "
            "in --params_override"
        )
    return InputSpec(input_type, batch_size, None, name)


def decode_image(encoded):
    """Encoded JPEG / PNG / GIF / BMP -> uint8 [h, w, 3], as the evaluation decoder does."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def encoded_image_of_example(serialized):
    """The `image/encoded` bytes of one serialized tf.Example (scalar string)."""
    features = {"image/encoded": tf.io.FixedLenFeature((), tf.string)}
    return tf.io.parse_single_example(serialized, features)["image/encoded"]


def _map_images(fn, inputs, batch_size):
    """Applies `fn(one input) -> (image, image_info)` to each batch entry and stacks.

    A static batch is unrolled (plain ops, friendliest to TFLite); a dynamic one uses map_fn.
    """
    if batch_size is not None:
        outputs = [fn(x) for x in tf.unstack(inputs, num=batch_size)]
        return tf.stack([o[0] for o in outputs]), tf.stack([o[1] for o in outputs])
    return tf.map_fn(
        fn,
        inputs,
        fn_output_signature=(tf.TensorSpec(None, tf.float32), tf.TensorSpec([4, 2], tf.float32)),
    )


def network_inputs(inputs, spec, preprocess, network_size):
    """The signature input -> the network's `images` and `image_info`.

    Args:
      inputs: the signature input (see `InputSpec.tensor_spec`).
      spec: the InputSpec.
      preprocess: `fn(uint8 [h, w, 3], network_size) -> (image [H, W, 3], image_info [4, 2])`,
        the model kind's evaluation preprocessing (`preprocessing.py`).
      network_size: (H, W).

    Returns:
      images: [b, H, W, 3] float32.
      image_info: [b, 4, 2] float32.
    """
    height, width = int(network_size[0]), int(network_size[1])
    if spec.input_type == RAW_IMAGE_TENSOR:
        raw_size = tf.shape(inputs)[1:3]
        fits = tf.debugging.assert_less_equal(
            raw_size,
            tf.constant([height, width]),
            message=f"raw_image_tensor images must fit in the network input {height}x{width}",
        )
        with tf.control_dependencies([fits]):
            images = tf.image.pad_to_bounding_box(inputs, 0, 0, height, width)
        return images, preprocessing.raw_image_info(raw_size, tf.shape(inputs)[0])

    def one(x):
        if spec.input_type == TF_EXAMPLE:
            x = encoded_image_of_example(x)
        image = x if spec.input_type == IMAGE_TENSOR else decode_image(x)
        return preprocess(image, network_size)

    images, image_info = _map_images(one, inputs, spec.batch_size)
    images.set_shape([spec.batch_size, height, width, 3])
    return images, image_info
