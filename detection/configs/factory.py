"""The one list of models and their default parameters."""

from detection.configs import (
    classification_config,
    maskrcnn_config,
    retinanet_config,
    segmentation_config,
    shapemask_config,
)
from detection.hyperparameters import ParamsDict, ParamsError

_DEFAULTS = {
    "retinanet": (retinanet_config.RETINANET_CFG, retinanet_config.RETINANET_RESTRICTIONS),
    "mask_rcnn": (maskrcnn_config.MASKRCNN_CFG, maskrcnn_config.MASKRCNN_RESTRICTIONS),
    "cascade_mask_rcnn": (
        maskrcnn_config.CASCADE_MASKRCNN_CFG,
        maskrcnn_config.MASKRCNN_RESTRICTIONS,
    ),
    "shapemask": (shapemask_config.SHAPEMASK_CFG, shapemask_config.SHAPEMASK_RESTRICTIONS),
    "classification": (
        classification_config.CLASSIFICATION_CFG,
        classification_config.CLASSIFICATION_RESTRICTIONS,
    ),
    "segmentation": (
        segmentation_config.SEGMENTATION_CFG,
        segmentation_config.SEGMENTATION_RESTRICTIONS,
    ),
}

MODELS = tuple(_DEFAULTS)


def config_generator(model):
    """Returns a fresh ParamsDict of `model`'s defaults with its restrictions.

    Raises:
      ParamsError: `model` is not one of MODELS.
    """
    if not isinstance(model, str) or model not in _DEFAULTS:
        raise ParamsError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    defaults, restrictions = _DEFAULTS[model]
    return ParamsDict(defaults, restrictions)
