"""The exportable `tf.Module`: signature input -> preprocessing -> model fn -> outputs.

    module = build_serving_module(params, checkpoint_path, input_spec, OutputOptions())
    export_saved_model(module, export_dir)

The SavedModel holds one signature, `serving_default`, and nothing of this package: a process
that only imports TensorFlow loads and calls it. `assets.extra/` (ignored by TensorFlow and TF
Serving) records how it was exported (`export.json`) and the resolved params (`params.yaml`),
for the tools that evaluate or convert it.
"""

import json
import os

import tensorflow as tf

from detection.core.modes import PREDICT
from detection.executor import checkpoints
from detection.model_fns import factory as model_fn_factory
from detection.serving import factory, input_types

EXPORT_INFO_FILE = "export.json"
PARAMS_FILE = "params.yaml"
EXTRA_DIR = "assets.extra"


class ServingModule(tf.Module):
    """A restored model with a serving function for one input type.

    Attributes:
      model_type, kind, input_spec, network_size, options: what `serve` does.
      model_variables: {path: variable}, tracked so that the SavedModel holds the weights
        (Keras 3 keeps some layers in plain lists, which object-graph saving would miss).
    """

    def __init__(self, model_fn, model, model_type, input_spec, network_size, options):
        super().__init__(name="serving")
        # A closure, not attributes: only the variables belong in the SavedModel's object
        # graph, not the Keras model's own (which TensorFlow would try to serialize).
        self._predict = lambda features: model_fn(model, features, None, PREDICT)
        self.model_variables = checkpoints.model_variables(model)
        self.model_type = model_type
        self.kind = factory.kind_of(model_type)
        self.input_spec = input_spec
        self.network_size = tuple(network_size)
        self.options = options
        self._function = tf.function(self.serve, input_signature=[input_spec.tensor_spec()])

    def serve(self, inputs):
        """The signature: see `input_types` for `inputs`, `outputs` for what it returns."""
        images, image_info = input_types.network_inputs(
            inputs, self.input_spec, self.kind.preprocess, self.network_size
        )
        features = {
            "images": images,
            "image_info": image_info,
            "source_ids": tf.zeros([tf.shape(images)[0]], tf.int64),
        }
        predictions = self._predict(features)["predictions"]
        # Checked after tracing (`concrete_function`): errors raised while tracing come back
        # wrapped in autograph's multi-line report.
        self.prediction_keys = tuple(sorted(predictions))
        if self.kind.missing_predictions(predictions):
            return {"missing_predictions": tf.zeros([])}
        result = self.kind.format_outputs(predictions, image_info, self.network_size, self.options)
        if self.options.output_image_info:
            result["image_info"] = image_info
        # Named outputs: signature keys and TFLite tensor names stay readable.
        return {name: tf.identity(value, name=name) for name, value in result.items()}

    def concrete_function(self):
        """The traced `serve` for the input spec (the SavedModel signature, the TFLite input).

        Raises:
          ValueError: the model's predictions do not fit its serving kind, or the options ask
            for outputs the model does not have.
        """
        function = self._function.get_concrete_function()
        self.kind.check_predictions(self.model_type, self.prediction_keys)
        if self.options.output_full_image_masks and "detection_masks" not in self.prediction_keys:
            raise ValueError("--output_full_image_masks: this model returns no detection_masks")
        return function

    def export_info(self):
        """What `assets.extra/export.json` records (read back by `loaded.py`)."""
        spec = self.input_spec
        return {
            "model_type": self.model_type,
            "kind": self.kind.name,
            "input_type": spec.input_type,
            "input_name": spec.name,
            "batch_size": spec.batch_size,
            "input_image_size": None if spec.image_size is None else list(spec.image_size),
            "network_input_size": list(self.network_size),
            "output_image_info": self.options.output_image_info,
            "output_normalized_coordinates": self.options.output_normalized_coordinates,
            "cast_num_detections_to_float": self.options.cast_num_detections_to_float,
            "output_full_image_masks": self.options.output_full_image_masks,
        }


def build_serving_module(params, checkpoint_path, input_spec, options):
    """Builds the model of `params`, restores `checkpoint_path`, and wraps it.

    Args:
      params: the experiment's params (`type` and the parser's `output_size` matter).
      checkpoint_path: a checkpoint prefix or a training directory (its latest checkpoint).
      input_spec: `input_types.InputSpec`.
      options: `outputs.OutputOptions`.

    Raises:
      FileNotFoundError: no checkpoint at `checkpoint_path`.
      ValueError: the checkpoint does not hold this model's variables, or the model's
        predictions do not fit its serving kind.
      ParamsError: a model type without model fn or serving kind.
    """
    factory.kind_of(params.type)
    path = checkpoints.resolve_checkpoint_path(checkpoint_path)
    model_fn = model_fn_factory.model_fn_from_params(params)
    model = model_fn.build_model()
    checkpoints.restore_model(model, path)
    module = ServingModule(
        model_fn, model, params.type, input_spec, factory.network_input_size(params), options
    )
    module.concrete_function()  # Traces now, so a contract error surfaces before saving.
    return module


def export_saved_model(module, export_dir, params=None):
    """Writes the SavedModel with its `serving_default` signature, plus `assets.extra/`.

    Args:
      module: a ServingModule.
      export_dir: the SavedModel directory (created; files in it are overwritten).
      params: optional ParamsDict saved as `assets.extra/params.yaml`.
    """
    tf.saved_model.save(
        module, export_dir, signatures={"serving_default": module.concrete_function()}
    )
    extra = os.path.join(export_dir, EXTRA_DIR)
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, EXPORT_INFO_FILE), "w") as f:
        f.write(json.dumps(module.export_info(), indent=2) + "\n")
    if params is not None:
        with tf.io.gfile.GFile(os.path.join(extra, PARAMS_FILE), "w") as f:
            f.write(params.to_yaml())
