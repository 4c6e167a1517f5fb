"""The one list of model fns: `params.type` -> ModelFn subclass.

To add a model: write its model fn in this package (the contract is `detection.core.model_fn`),
and list it in `_MODEL_FNS` under its `type`.
"""

from detection.hyperparameters import registry
from detection.model_fns.classification import ClassificationModelFn
from detection.model_fns.maskrcnn import MaskRCNNModelFn
from detection.model_fns.retinanet import RetinaNetModelFn
from detection.model_fns.segmentation import SegmentationModelFn
from detection.model_fns.shapemask import ShapeMaskModelFn

_MODEL_FNS = {
    "retinanet": RetinaNetModelFn,
    "classification": ClassificationModelFn,
    "segmentation": SegmentationModelFn,
    # One model fn: the cascade is switched on by roi_sampling.cascade_iou_thresholds.
    "mask_rcnn": MaskRCNNModelFn,
    "cascade_mask_rcnn": MaskRCNNModelFn,
    "shapemask": ShapeMaskModelFn,
}

MODELS = tuple(_MODEL_FNS)


def model_fn_from_params(params):
    """Returns the ModelFn for `params.type`.

    Raises:
      ParamsError: the model type has no implementation yet.
    """
    return registry.lookup(_MODEL_FNS, params.type, "model")(params)


def model_types():
    """The registered model types (the keys `params.type` may take)."""
    return tuple(_MODEL_FNS)
