"""YAML reading and writing for hyperparameters.

PyYAML implements YAML 1.1, whose float pattern needs a dot and a signed exponent, so
`1e-4` or `5e3` load as *strings*. Researchers write learning rates that way, so the loader
here resolves every number YAML 1.2 accepts (`1e-4`, `1.5E+3`, `.5`, `-inf`, `nan`) as a
float, while keeping everything else as PyYAML's SafeLoader does.
"""

import re

import yaml

from detection.hyperparameters.errors import ParamsError

_FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class ParamsYamlLoader(yaml.SafeLoader):
    """SafeLoader whose float resolver also accepts `1e-4`-style numbers."""


# Replace (not extend) the float resolver: the inherited one would still claim its own
# subset first, which is harmless, but keeping a single pattern makes the behaviour obvious.
ParamsYamlLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ParamsYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _FLOAT_PATTERN, list("-+0123456789.")
)


def _describe_yaml_error(error):
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem


def load_yaml_string(text, source="<string>"):
    """Parses YAML (or JSON, which is YAML flow syntax) text.

    Args:
      text: the YAML text.
      source: what to call the text in error messages.

    Returns:
      The parsed Python object (dict, list, scalar or None).

    Raises:
      ParamsError: the text is not valid YAML; the message names `source` and the line.
    """
    try:
        return yaml.load(text, Loader=ParamsYamlLoader)
    except yaml.YAMLError as error:
        raise ParamsError(f"invalid YAML in {source}: {_describe_yaml_error(error)}") from None


def load_yaml_file(path):
    """Reads a YAML file into a dict (an empty file gives {}).

    Raises:
      ParamsError: the file is missing, unreadable, not YAML, or not a mapping.
    """
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as error:
        raise ParamsError(f"cannot read config file {path}: {error.strerror}") from None
    data = load_yaml_string(text, source=path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(
            f"config file {path} must hold a mapping of parameters, got {type(data).__name__}"
        )
    return data


def dump_yaml(data):
    """Dumps plain data as block-style YAML with keys in insertion order."""
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False, width=100)
