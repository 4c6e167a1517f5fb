"""The one list of model fns: `params.type` -> ModelFn subclass.

To add a model: write its model fn in this package (the contract is `detection.core.model_fn`),
and list it in `_MODEL_FNS` under its `type`.
"""

from detection.hyperparameters import registry
from detection.model_fns.retinanet import RetinaNetModelFn

_MODEL_FNS = {"retinanet": RetinaNetModelFn}

MODELS = tuple(_MODEL_FNS)


def model_fn_from_params(params):
    """Returns the ModelFn for `params.type`.

    Raises:
      ParamsError: the model type has no implementation yet.
    """
    return registry.lookup(_MODEL_FNS, params.type, "model")(params)
