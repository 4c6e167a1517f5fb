"""The one list of model fns: `params.type` -> ModelFn subclass."""

from detection.hyperparameters import ParamsError
from detection.modeling.retinanet_model import RetinanetModelFn

_MODEL_FNS = {"retinanet": RetinanetModelFn}


def model_fn_from_params(params):
    """Returns the ModelFn for `params.type`.

    Raises:
      ParamsError: the model type has no implementation yet.
    """
    model = params.type
    if model not in _MODEL_FNS:
        raise ParamsError(
            f"model '{model}' is not implemented yet; available: {', '.join(sorted(_MODEL_FNS))}"
        )
    return _MODEL_FNS[model](params)
