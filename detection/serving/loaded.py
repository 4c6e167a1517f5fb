"""Runs an exported model (SavedModel directory or .tflite file) from the host.

    model = loaded.load("export/shapes")          # or "export/tflite/model.tflite"
    results = model.predict([Example(image=uint8_array), Example(serialized=record_bytes)])

Whatever the model's input type, `predict` builds its input from each example (encoding,
decoding or preprocessing on the host as needed) and returns results in the ORIGINAL image's
pixels: for detection `boxes [n, 4]`, `classes [n]`, `scores [n]` of the n valid detections
(plus `masks` and `mask_boxes` for mask models); for classification the signature's outputs;
for segmentation `label_map [h, w]`.

How to feed the model comes from `export.json` (in `assets.extra/` of a SavedModel, beside a
.tflite file), or for a .tflite file without it from its input dtype (float32:
raw_image_tensor, uint8: image_tensor).
"""

import dataclasses
import io
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from detection.ops import boxes as box_ops
from detection.serving import factory, input_types
from detection.serving import module as serving_module
from detection.serving import tflite

EXPORT_INFO_FILE = serving_module.EXPORT_INFO_FILE


@dataclasses.dataclass
class Example:
    """One image to run: decoded pixels, a serialized tf.Example with `image/encoded`, or both.

    `source_id` is carried along for the caller (evaluation).
    """

    image: np.ndarray | None = None
    serialized: bytes | None = None
    source_id: int = -1

    def pixels(self):
        """uint8 [h, w, 3] (decoded from `serialized` if needed, as evaluation decodes)."""
        if self.image is None:
            encoded = input_types.encoded_image_of_example(tf.constant(self.serialized))
            self.image = input_types.decode_image(encoded).numpy()
        return self.image

    def encoded(self):
        """The encoded image: `image/encoded` of the example, or the pixels as a lossless PNG."""
        if self.serialized is not None:
            return input_types.encoded_image_of_example(tf.constant(self.serialized)).numpy()
        buffer = io.BytesIO()
        Image.fromarray(self.image).save(buffer, format="PNG")
        return buffer.getvalue()

    def tf_example(self):
        """A serialized tf.Example holding at least `image/encoded`."""
        if self.serialized is not None:
            return self.serialized
        feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[self.encoded()]))
        example = tf.train.Example(features=tf.train.Features(feature={"image/encoded": feature}))
        return example.SerializeToString()


@dataclasses.dataclass
class _Geometry:
    """How the model's view of an image relates to the original image.

    model_size: (h, w) of the image the model took as "original".
    image_info: [4, 2] of host preprocessing (raw_image_tensor), else None.
    scale: (y, x) of a host resize (static-size image_tensor), else None.
    """

    original_size: tuple
    model_size: tuple
    image_info: np.ndarray | None = None
    scale: tuple | None = None


def read_export_info(path):
    """The export.json of a SavedModel directory or beside a .tflite file, or None."""
    if tf.io.gfile.isdir(path):
        candidate = os.path.join(path, serving_module.EXTRA_DIR, EXPORT_INFO_FILE)
    else:
        candidate = os.path.join(os.path.dirname(path), EXPORT_INFO_FILE)
    if not tf.io.gfile.exists(candidate):
        return None
    with tf.io.gfile.GFile(candidate) as f:
        return json.load(f)


class ExportedModel:
    """A callable exported model; use `load()`."""

    def __init__(self, call, tensor_spec, output_names, info):
        """Args:
        call: `fn(batch ndarray) -> {name: ndarray}`, the model's signature.
        tensor_spec: the signature input's TensorSpec.
        output_names: the signature's output names.
        info: export.json contents (or what could be inferred).
        """
        self._call = call
        self.input_type = info["input_type"]
        shape = tensor_spec.shape.as_list()
        self.batch_size = shape[0]
        self.image_size = tuple(shape[1:3]) if len(shape) == 4 else None
        names = set(output_names)
        if "detection_boxes" in names:
            kind = "detection"
        elif "label_map" in names:
            kind = "segmentation"
        elif "logits" in names:
            kind = "classification"
        else:
            raise ValueError(f"outputs {sorted(names)} are not those of an exported model")
        self.kind = factory.KINDS[kind]
        self.network_size = tuple(info.get("network_input_size") or self.image_size)
        self.normalized = bool(info.get("output_normalized_coordinates", False))
        self.full_image_masks = bool(info.get("output_full_image_masks", False))
        self._numpy_dtype = tensor_spec.dtype.as_numpy_dtype

    def _model_input(self, example):
        """(one input of the signature, _Geometry) for an Example."""
        if self.input_type == input_types.TF_EXAMPLE:
            image = example.pixels()
            return example.tf_example(), _Geometry(image.shape[:2], image.shape[:2])
        if self.input_type == input_types.IMAGE_BYTES:
            image = example.pixels()
            return example.encoded(), _Geometry(image.shape[:2], image.shape[:2])
        image = example.pixels()
        original = image.shape[:2]
        if self.input_type == input_types.RAW_IMAGE_TENSOR:
            raw, info = self.kind.preprocess(tf.constant(image), self.network_size)
            return raw.numpy(), _Geometry(original, self.network_size, image_info=info.numpy())
        if self.image_size[0] is None or tuple(self.image_size) == tuple(original):
            return image, _Geometry(original, original)
        # A static-size image_tensor model: the host resizes, boxes are scaled back.
        resized = tf.image.resize(image, self.image_size, method="bilinear")
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()
        scale = (self.image_size[0] / original[0], self.image_size[1] / original[1])
        return resized, _Geometry(original, self.image_size, scale=scale)

    def _batches(self, inputs, max_batch_size):
        """Index ranges of consecutive inputs that can share one call."""
        limit = self.batch_size or max_batch_size
        start = 0
        while start < len(inputs):
            end = start + 1
            while end < len(inputs) and end - start < limit:
                if isinstance(inputs[start], np.ndarray) and (
                    inputs[end].shape != inputs[start].shape
                ):
                    break  # Tensors of one call share a shape.
                end += 1
            yield start, end
            start = end

    def predict(self, examples, max_batch_size=8):
        """Runs the model on `examples`; a list of result dicts (module docstring)."""
        prepared = [self._model_input(example) for example in examples]
        inputs = [p[0] for p in prepared]
        results = []
        for start, end in self._batches(inputs, max_batch_size):
            batch = inputs[start:end]
            if self.batch_size is not None:
                batch = batch + [batch[-1]] * (self.batch_size - len(batch))
            array = np.asarray(batch, dtype=object if isinstance(batch[0], bytes) else None)
            if array.dtype != object:
                array = array.astype(self._numpy_dtype)
            outputs = self._call(array)
            for i in range(end - start):
                one = {name: value[i] for name, value in outputs.items()}
                results.append(self._to_original(one, prepared[start + i][1]))
        return results

    def _boxes_to_original(self, boxes, geometry):
        boxes = np.asarray(boxes, np.float64)
        if self.normalized:
            boxes = boxes * np.tile(np.asarray(geometry.model_size, np.float64), 2)
        if geometry.image_info is not None:
            boxes = box_ops.boxes_to_original_pixels(boxes, geometry.image_info.astype(np.float64))
        elif geometry.scale is not None:
            boxes = boxes / np.tile(np.asarray(geometry.scale, np.float64), 2)
        return boxes

    def _to_original(self, outputs, geometry):
        if self.kind.name == "classification":
            return outputs
        if self.kind.name == "segmentation":
            h, w = (int(v) for v in geometry.model_size)
            label_map = outputs["label_map"][:h, :w]
            if geometry.image_info is not None:
                valid = np.round(geometry.image_info[1]).astype(int)
                label_map = label_map[: valid[0], : valid[1]]
            if label_map.shape != tuple(geometry.original_size):
                label_map = tf.image.resize(
                    label_map[..., None], geometry.original_size, method="nearest"
                ).numpy()[..., 0]
            return {"label_map": label_map}
        count = int(outputs["num_detections"])
        result = {
            "boxes": self._boxes_to_original(outputs["detection_boxes"][:count], geometry),
            "classes": np.asarray(outputs["detection_classes"][:count], np.int64),
            "scores": np.asarray(outputs["detection_scores"][:count], np.float64),
        }
        if "detection_masks" in outputs:
            if self.full_image_masks:
                if geometry.image_info is not None or geometry.scale is not None:
                    raise ValueError(
                        "full-image masks of a raw_image_tensor or fixed-size image_tensor "
                        "model cannot be mapped back to the original image; export "
                        "box-relative masks"
                    )
                h, w = geometry.original_size
                result["masks"] = outputs["detection_masks"][:count, :h, :w]
            else:
                mask_boxes = outputs.get("detection_outer_boxes", outputs["detection_boxes"])
                result["masks"] = outputs["detection_masks"][:count]
                result["mask_boxes"] = self._boxes_to_original(mask_boxes[:count], geometry)
        return result


def _saved_model(path):
    info = read_export_info(path)
    if info is None:
        raise ValueError(
            f"{path} has no {serving_module.EXTRA_DIR}/{EXPORT_INFO_FILE}: it was not written "
            "by detection.tools.export_saved_model"
        )
    signature = tf.saved_model.load(path).signatures["serving_default"]
    spec = tf.nest.flatten(signature.structured_input_signature)[0]
    name = info["input_name"]

    def call(batch):
        return {k: v.numpy() for k, v in signature(**{name: tf.constant(batch)}).items()}

    return ExportedModel(call, spec, list(signature.structured_outputs), info)


def tflite_interpreter(path):
    """A `tf.lite.Interpreter` with its tensors allocated."""
    interpreter = tflite.new_interpreter(model_path=path, num_threads=os.cpu_count())
    interpreter.allocate_tensors()
    return interpreter


def _tflite(path):
    interpreter = tflite_interpreter(path)
    runner = interpreter.get_signature_runner()
    ((name, detail),) = runner.get_input_details().items()
    info = read_export_info(path) or {}
    if "input_type" not in info:
        info["input_type"] = (
            input_types.RAW_IMAGE_TENSOR
            if detail["dtype"] == np.float32
            else input_types.IMAGE_TENSOR
        )
    spec = tf.TensorSpec(detail["shape"].tolist(), tf.as_dtype(detail["dtype"]))

    def call(batch):
        return runner(**{name: batch})

    return ExportedModel(call, spec, list(runner.get_output_details()), info)


def load(path):
    """Loads a SavedModel directory or a .tflite file written by the export tools.

    Raises:
      FileNotFoundError: nothing at `path`.
      ValueError: not an exported model of this package.
    """
    if tf.io.gfile.isdir(path):
        if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            raise FileNotFoundError(f"{path} is a directory without saved_model.pb")
        return _saved_model(path)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no SavedModel directory or .tflite file at {path}")
    if not path.endswith(".tflite"):
        raise ValueError(f"{path}: expected a SavedModel directory or a .tflite file")
    return _tflite(path)
