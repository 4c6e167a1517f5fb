"""Resolving a run's parameters: model defaults, then YAML files, then the override string."""

import logging

from detection.configs import architecture_checks, factory, inert_keys
from detection.hyperparameters import ParamsError, override_params_dict, yaml_io

_log = logging.getLogger(__name__)


def model_from_config_files(config_files):
    """The `type` the YAML files name (the last one wins), or None."""
    model = None
    for path in config_files or []:
        model = yaml_io.load_yaml_file(path).get("type", model)
    if model is not None and not isinstance(model, str):
        raise ParamsError(f"unknown model {model!r} in the config files' type")
    return model


def _check_override(override, source):
    for key, reason in inert_keys.inert_keys_set_by(override):
        _log.warning(
            "%s sets '%s', which has no effect in this framework: %s.", source, key, reason
        )
    for key, value, reason in inert_keys.unsupported_keys_set_by(override):
        raise ParamsError(f"{source} sets '{key}: {value}': {reason}")


def _override_sources(params_override):
    """[(name for messages, override)] of one override (string or mapping) or a list of them."""
    if params_override is None:
        return []
    if isinstance(params_override, (str, dict)):
        return [("--params_override", params_override)]
    overrides = list(params_override)
    if len(overrides) == 1:
        return [("--params_override", overrides[0])]
    return [(f"--params_override #{i}", text) for i, text in enumerate(overrides, 1)]


def load_params(model, config_files=(), params_override="", extra_overrides=None):
    """Builds the locked, validated params of a run.

    Args:
      model: the model type (a key of configs.factory.MODELS), or None to take it from the
        `type` key of the config files.
      config_files: YAML files applied in order.
      params_override: an override string (inline YAML/JSON, comma form, or a YAML path) or
        mapping, or a list of them applied in order after the config files.
      extra_overrides: a dict applied last (e.g. values of command-line flags).

    Returns:
      The locked ParamsDict.

    Raises:
      ParamsError: unknown model, key, type or violated restriction; the message names it.
    """
    file_model = model_from_config_files(config_files)
    if model is None:
        if file_model is None:
            raise ParamsError(
                "no model given: pass --model or set 'type' in a --config_file "
                f"(models: {', '.join(factory.MODELS)})"
            )
        model = file_model
    elif file_model is not None and file_model != model:
        raise ParamsError(f"--model={model} but the config files say type: {file_model}")
    params = factory.config_generator(model)
    for path in config_files or []:
        try:
            applied = override_params_dict(params, yaml_io.load_yaml_file(path))
        except ParamsError as error:
            raise ParamsError(f"{path}: {error}") from None
        _check_override(applied, path)
    for source, text in _override_sources(params_override):
        try:
            applied = override_params_dict(params, text)
        except ParamsError as error:
            raise ParamsError(f"{source}: {error}") from None
        _check_override(applied, source)
    if extra_overrides:
        params.override(extra_overrides)
    if params.type != model:
        raise ParamsError(
            f"type: {params.type} is set by an override, but the model is {model}; choose the "
            "model with --model or the config files' type"
        )
    params.validate()
    architecture_checks.check(params, factory.config_generator(model))
    params.lock()
    return params
