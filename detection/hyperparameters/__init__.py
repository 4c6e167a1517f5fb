"""Hyperparameters: ParamsDict, YAML loading and override parsing."""

from detection.hyperparameters.errors import ParamsError
from detection.hyperparameters.override import override_params_dict, parse_override
from detection.hyperparameters.params_dict import (
    ParamsDict,
    read_yaml_to_params_dict,
    save_params_dict_to_yaml,
)

__all__ = [
    "ParamsDict",
    "ParamsError",
    "override_params_dict",
    "parse_override",
    "read_yaml_to_params_dict",
    "save_params_dict_to_yaml",
]
