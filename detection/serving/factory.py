"""Model type -> serving kind: its evaluation preprocessing and its output formatter.

To make a new model type exportable, list it in `_KINDS` under its `type` (the key of
`detection/model_fns/factory.py`). A kind fixes the PREDICT-mode predictions the model fn must
return (docs/CONVENTIONS.md); a model fn that returns others fails at export with a message
naming the missing keys. `tests/serving/test_every_model_exports.py` exports every registered
model type.
"""

import dataclasses
from collections.abc import Callable

from detection.hyperparameters import registry
from detection.serving import outputs, preprocessing


@dataclasses.dataclass(frozen=True)
class ServingKind:
    """How one family of models is served.

    Attributes:
      name: 'detection', 'classification' or 'segmentation'.
      preprocess: `fn(uint8 [h, w, 3], network_size) -> (image, image_info)`.
      format_outputs: `fn(predictions, image_info, network_size, OutputOptions) -> outputs`.
      required_predictions: keys the model fn's PREDICT predictions must have; a tuple
        entry names alternatives (any one of them).
    """

    name: str
    preprocess: Callable
    format_outputs: Callable
    required_predictions: tuple

    def missing_predictions(self, predictions):
        """The required prediction keys (or alternatives, 'a or b') absent from `predictions`."""
        missing = []
        for key in self.required_predictions:
            alternatives = key if isinstance(key, tuple) else (key,)
            if not any(k in predictions for k in alternatives):
                missing.append(" or ".join(alternatives))
        return missing

    def check_predictions(self, model_type, predictions):
        """Raises ValueError naming the prediction keys `model_type` fails to return."""
        missing = self.missing_predictions(predictions)
        if missing:
            raise ValueError(
                f"model type {model_type!r} is served as {self.name} but its predict mode "
                f"returns no {', '.join(missing)} (it returns {', '.join(sorted(predictions))})"
            )


DETECTION = ServingKind(
    "detection",
    preprocessing.detection_image,
    outputs.detection_outputs,
    ("num_detections", "detection_boxes", "detection_classes", "detection_scores"),
)
CLASSIFICATION = ServingKind(
    "classification",
    preprocessing.classification_image,
    outputs.classification_outputs,
    ("logits",),
)
SEGMENTATION = ServingKind(
    "segmentation",
    preprocessing.detection_image,
    outputs.segmentation_outputs,
    (("logits", "classes"),),
)
KINDS = {kind.name: kind for kind in (DETECTION, CLASSIFICATION, SEGMENTATION)}

_KINDS = {
    "retinanet": DETECTION,
    "mask_rcnn": DETECTION,
    "cascade_mask_rcnn": DETECTION,
    "shapemask": DETECTION,
    "classification": CLASSIFICATION,
    "segmentation": SEGMENTATION,
}


def kind_of(model_type):
    """The ServingKind of a model type.

    Raises:
      ParamsError: the model type has no serving kind.
    """
    return registry.lookup(_KINDS, model_type, "model")


def network_input_size(params):
    """(H, W): the `output_size` of the parser that `architecture.parser` names."""
    size = params[params.architecture.parser].output_size
    return (int(size[0]), int(size[1]))
