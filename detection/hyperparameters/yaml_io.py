"""YAML reading and writing for hyperparameters.

PyYAML implements YAML 1.1, whose float pattern needs a dot and a signed exponent, so
`1e-4` or `5e3` load as *strings*. Researchers write learning rates that way, so the loader
here resolves every number YAML 1.2 accepts (`1e-4`, `1.5E+3`, `.5`, `-inf`, `nan`) as a
float, while keeping everything else as PyYAML's SafeLoader does.

Stricter than PyYAML, as YAML 1.2 asks: a key repeated in one mapping is an error (PyYAML
keeps the last value, so a forgotten line would silently win). Files must be UTF-8, and
nesting deeper than `MAX_NESTING` levels is refused before Python's recursion limit is hit.
"""

import re

import yaml
from yaml import nodes

from detection.hyperparameters.errors import ParamsError

_FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)


# Parameter trees are 4 levels deep; values under `null` defaults add a few more. PyYAML's
# recursive composer reaches Python's recursion limit at a few hundred levels.
MAX_NESTING = 32


class ParamsYamlLoader(yaml.SafeLoader):
    """SafeLoader with `1e-4`-style floats, refusing duplicate keys and deep nesting."""

    def compose_node(self, parent, index):
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nesting deeper than {MAX_NESTING} levels",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, nodes.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<:` merges are overridden by explicit keys by design.
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # Unhashable: PyYAML's own check reports it.
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        f"while constructing a mapping (the key first appears on line "
                        f"{first.start_mark.line + 1})",
                        node.start_mark,
                        f"duplicate key {key!r}",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


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
    context = getattr(error, "context", None)
    if context and "first appears" in context:
        problem += " " + context[context.index("(") :]
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
    if any("\udc80" <= char <= "\udcff" for char in text):
        # Python decodes undecodable bytes of command-line arguments to these surrogates.
        raise ParamsError(f"{source} is not valid UTF-8 text")
    try:
        return yaml.load(text, Loader=ParamsYamlLoader)
    except yaml.YAMLError as error:
        raise ParamsError(f"invalid YAML in {source}: {_describe_yaml_error(error)}") from None
    except RecursionError:
        raise ParamsError(f"invalid YAML in {source}: nested too deeply") from None


def load_yaml_file(path):
    """Reads a YAML file into a dict (an empty file gives {}).

    Raises:
      ParamsError: the file is missing, unreadable, not UTF-8, not YAML, or not a mapping.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise ParamsError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ParamsError(
            f"config file {path} is not UTF-8 text: byte 0x{data[error.start]:02x} on line {line}"
        ) from None
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
