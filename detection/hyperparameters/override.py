"""Parsing of override strings into nested dicts.

`--params_override` (and each `--config_file`) accepts three spellings, all of which the
original framework's users have in their scripts:

- a path to a YAML file: `my_overrides.yaml`;
- inline YAML or JSON flow: `"{train: {total_steps: 10}, eval: {eval_batch_size: 2}}"`;
- the comma form: `"train.total_steps=10,anchor.aspect_ratios=[1.0,2.0]"`.
"""

import os
import re

from detection.hyperparameters import yaml_io
from detection.hyperparameters.errors import ParamsError
from detection.hyperparameters.params_dict import ParamsDict

_DOTTED_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _split_top_level(text, separator=","):
    """Splits on `separator` outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quote or depth != 0:
        raise ParamsError(f"unbalanced brackets or quotes in override '{text}'")
    parts.append(text[start:])
    return parts


def _looks_like_comma_form(text):
    first = _split_top_level(text)[0]
    key, sep, _ = first.partition("=")
    return bool(sep) and bool(_DOTTED_KEY.match(key.strip()))


def _parse_comma_form(text):
    result = {}
    for item in _split_top_level(text):
        if not item.strip():
            continue
        key, sep, raw_value = item.partition("=")
        key = key.strip()
        if not sep or not _DOTTED_KEY.match(key):
            raise ParamsError(
                f"cannot parse override item '{item.strip()}': expected 'dotted.key=value'"
            )
        value = yaml_io.load_yaml_string(raw_value.strip(), source=f"override '{key}'")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ParamsError(f"override sets both '{part}' and keys under it in '{text}'")
            node = child
        if parts[-1] in node:
            # As for a key repeated in a YAML mapping: one of the two would be lost.
            what = "twice" if not isinstance(node[parts[-1]], dict) else "and keys under it"
            raise ParamsError(f"override sets '{key}' {what}")
        node[parts[-1]] = value
    return result


def parse_override(text):
    """Turns an override string (file path, inline YAML/JSON, comma form) into a dict.

    Raises:
      ParamsError: the string cannot be parsed, or names a YAML file that does not exist.
    """
    if text is None or not text.strip():
        return {}
    stripped = text.strip()
    if os.path.isfile(stripped):
        return yaml_io.load_yaml_file(stripped)
    if (
        stripped.endswith((".yaml", ".yml", ".json"))
        and "\n" not in stripped
        and "=" not in stripped
        and ":" not in stripped.replace(":/", "")
    ):
        raise ParamsError(f"override file not found: {stripped}")
    if not stripped.startswith("{") and _looks_like_comma_form(stripped):
        return _parse_comma_form(stripped)
    data = yaml_io.load_yaml_string(stripped, source="the override")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(
            f"an override must be a mapping, a 'key=value' list or a "
            f"YAML file; got {stripped[:80]!r}"
        )
    return data


def override_params_dict(params, override, is_strict=True):
    """Applies a dict, ParamsDict or override string to `params` in place.

    Returns:
      The dict that was applied (useful for reporting which keys an override touched).
    """
    if isinstance(override, str):
        override = parse_override(override)
    elif isinstance(override, ParamsDict):
        override = override.as_dict()
    elif override is None:
        override = {}
    params.override(override, is_strict=is_strict)
    return override
