"""ParamsDict: the strict, typed, lockable tree of hyperparameters.

A ParamsDict is built from a model's defaults and then overridden, in order, by YAML files and
a `--params_override` string. Overrides may only change keys that exist (strict mode), and a
value must keep the kind of its default: numbers stay numbers (an int may replace a float and
vice versa; an integral float such as `1e4` replacing an int becomes an int, a non-finite
one is refused), strings stay strings, lists stay lists (and their items keep the kind of the
default's items: `aspect_ratios: [[1.0, 2.0]]` is refused), sections stay sections. A default
of `None` accepts any value, since it means "unset" rather than a type.

Restrictions are cross-key rules such as `'shapemask_head.mask_crop_size ==
shapemask_parser.mask_crop_size'` or `'retinanet_parser.unmatched_threshold <=
retinanet_parser.match_threshold'`, checked by `validate()`.
"""

import copy
import difflib
import math
import os
import re

from detection.hyperparameters import yaml_io
from detection.hyperparameters.errors import ParamsError

# Longest operators first so that `<=` is never read as `<` (a bug of the original framework).
_RESTRICTION_PATTERN = re.compile(r"^\s*([^=!<>\s]+)\s*(==|!=|<=|>=|<|>)\s*([^=!<>\s]+)\s*$")
_COMPARATORS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_RESERVED = ("_locked", "_restrictions", "_path", "_values", "_item_kinds")
_MAX_SHOWN_CHARS = 80


def _kind(value):
    """The type family a value belongs to, for override type checks."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, (dict, ParamsDict)):
        return "dict"
    return type(value).__name__


def _type_name(value):
    return "null" if value is None else type(value).__name__


def _item_kind(values):
    """The kind all items of a list share ('number', 'list of number'...), or None."""
    kinds = {_kind(v) for v in values}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind == "list":
        inner = {_item_kind(v) for v in values}
        return f"list of {inner.pop()}" if len(inner) == 1 and None not in inner else "list"
    return kind


def _show(value):
    """A short description of a value for error messages (sections are not dumped)."""
    if isinstance(value, ParamsDict):
        keys = list(value.keys())
        shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
        return f"a section ({shown})"
    text = repr(value)
    if len(text) > _MAX_SHOWN_CHARS:
        text = text[: _MAX_SHOWN_CHARS - 3] + "..."
    return f"{_type_name(value)} ({text})"


def _check_items(path, value, kind):
    """Raises ParamsError if an item of the list `value` is not of `kind` (see _item_kind)."""
    if kind is None:
        return
    outer, _, inner = kind.partition(" of ")
    for i, item in enumerate(value):
        if _kind(item) != outer:
            raise ParamsError(
                f"wrong item type in '{path}': item {i} is {_show(item)}; its items must be "
                f"{outer}s"
            )
        if inner:
            _check_items(f"{path}[{i}]", item, inner)


def _close_matches(name, candidates):
    matches = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    if not matches:
        # Keys are often misspelled by a prefix or suffix (e.g. `lr` for `learning_rate`).
        matches = [c for c in candidates if name in c or c in name][:3]
    return matches


class ParamsDict:
    """A nested mapping of hyperparameters with attribute access.

    Example:
      params = ParamsDict({'train': {'total_steps': 10}})
      params.override({'train': {'total_steps': 20}})
      params.train.total_steps  # 20
    """

    def __init__(self, default_params=None, restrictions=None, _path=""):
        """Builds the tree.

        Args:
          default_params: a dict (nested dicts become nested ParamsDicts) or a ParamsDict.
          restrictions: list of restriction strings checked by `validate()`.
        """
        object.__setattr__(self, "_locked", False)
        object.__setattr__(self, "_restrictions", list(restrictions or []))
        object.__setattr__(self, "_path", _path)
        object.__setattr__(self, "_values", {})
        # The kind of each list's items in the defaults, kept so that overrides (which may
        # first empty a list) cannot change it.
        object.__setattr__(self, "_item_kinds", {})
        if isinstance(default_params, ParamsDict):
            default_params = default_params.as_dict()
        for key, value in (default_params or {}).items():
            self._add(self._check_key(key), value)

    def _add(self, key, value):
        self._values[key] = self._wrap(key, value)
        if isinstance(value, (list, tuple)) and value:
            self._item_kinds[key] = _item_kind(value)

    # ----------------------------------------------------------------------- access
    def _full(self, key):
        return f"{self._path}.{key}" if self._path else str(key)

    def _check_key(self, key):
        if not isinstance(key, str):
            raise ParamsError(
                f"parameter names must be strings, got {key!r} in '{self._path or '<root>'}'"
            )
        if key in _RESERVED or key in dir(ParamsDict):
            raise ParamsError(f"'{self._full(key)}' is a reserved name and cannot be a parameter")
        return key

    def _wrap(self, key, value):
        if isinstance(value, ParamsDict):
            value = value.as_dict()
        if isinstance(value, dict):
            return ParamsDict(value, _path=self._full(key))
        if isinstance(value, tuple):
            return list(value)
        return copy.deepcopy(value)

    def __getattr__(self, key):
        values = object.__getattribute__(self, "_values")
        if key in values:
            return values[key]
        if key.startswith("__"):
            raise AttributeError(key)
        raise AttributeError(self._unknown_key_message(key))

    def __getitem__(self, key):
        if key not in self._values:
            raise KeyError(self._unknown_key_message(key))
        return self._values[key]

    def __contains__(self, key):
        return key in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def keys(self):
        return self._values.keys()

    def items(self):
        return self._values.items()

    def get(self, key, default=None):
        return self._values.get(key, default)

    def _unknown_key_message(self, key):
        message = f"unknown parameter '{self._full(key)}'"
        matches = _close_matches(str(key), list(self._values))
        if matches:
            message += "; did you mean " + " or ".join(f"'{self._full(m)}'" for m in matches) + "?"
        elif self._values:
            message += f"; '{self._path or '<root>'}' has: " + ", ".join(sorted(self._values))
        return message

    # ------------------------------------------------------------------------ writes
    def __setattr__(self, key, value):
        self._set(key, value, is_strict=True)

    def __setitem__(self, key, value):
        self._set(key, value, is_strict=True)

    def __delattr__(self, key):
        raise ParamsError(f"parameters cannot be deleted: '{self._full(key)}'")

    def _set(self, key, value, is_strict):
        if self._locked:
            raise ParamsError(f"params are locked; cannot set '{self._full(key)}'")
        if key not in self._values:
            if is_strict:
                raise ParamsError(self._unknown_key_message(key))
            self._add(self._check_key(key), value)
            return
        current = self._values[key]
        if isinstance(current, ParamsDict) and isinstance(value, (dict, ParamsDict)):
            current.override(value, is_strict)
            return
        old_kind, new_kind = _kind(current), _kind(value)
        if old_kind == "dict" and new_kind == "none":
            raise ParamsError(
                f"'{self._full(key)}' is {_show(current)} and cannot be null; set the keys "
                "under it instead"
            )
        if old_kind != "none" and new_kind != "none" and old_kind != new_kind:
            hint = ""
            if isinstance(current, ParamsDict) and current.keys():
                hint = f"; set the keys under it, e.g. '{current._full(next(iter(current)))}'"
            raise ParamsError(
                f"wrong type for '{self._full(key)}': was {_show(current)}, got {_show(value)}"
                + hint
            )
        if new_kind == "list":
            _check_items(self._full(key), value, self._item_kinds.get(key))
        if isinstance(current, int) and old_kind == "number" and isinstance(value, float):
            if not math.isfinite(value):
                raise ParamsError(
                    f"wrong value for '{self._full(key)}': was int ({current!r}), got {value!r}"
                )
            if value.is_integer():
                value = int(value)  # `1e4` is how people write 10000.
        self._values[key] = self._wrap(key, value)

    def override(self, override_params, is_strict=True):
        """Overrides values recursively.

        Args:
          override_params: a dict or ParamsDict with (a subset of) this tree's keys.
          is_strict: when True an unknown key is an error; when False it is added.

        Raises:
          ParamsError: unknown key (strict), type mismatch, or locked params.
        """
        if self._locked:
            raise ParamsError("params are locked; cannot override")
        if isinstance(override_params, ParamsDict):
            override_params = override_params.as_dict()
        if not isinstance(override_params, dict):
            raise ParamsError(
                f"override for '{self._path or '<root>'}' must be a mapping, got "
                f"{_type_name(override_params)} ({override_params!r})"
            )
        for key, value in override_params.items():
            self._set(key, value, is_strict)

    def lock(self):
        """Makes this tree read-only: any later write raises ParamsError."""
        object.__setattr__(self, "_locked", True)
        for value in self._values.values():
            if isinstance(value, ParamsDict):
                value.lock()

    @property
    def locked(self):
        return self._locked

    # ---------------------------------------------------------------- introspection
    def as_dict(self):
        """Returns the tree as plain nested dicts (a deep copy)."""
        return {
            k: v.as_dict() if isinstance(v, ParamsDict) else copy.deepcopy(v)
            for k, v in self._values.items()
        }

    def flat_items(self):
        """Yields (dotted_path, value) for every leaf."""
        for key, value in self._values.items():
            if isinstance(value, ParamsDict) and value._values:
                yield from value.flat_items()
            else:
                yield self._full(key), value

    def __eq__(self, other):
        if isinstance(other, ParamsDict):
            return self.as_dict() == other.as_dict()
        if isinstance(other, dict):
            return self.as_dict() == other
        return NotImplemented

    def __repr__(self):
        return f"ParamsDict({self.as_dict()!r})"

    def to_yaml(self):
        """Block-style YAML of the tree, keys in definition order."""
        return yaml_io.dump_yaml(self.as_dict())

    @property
    def restrictions(self):
        return list(self._restrictions)

    # ------------------------------------------------------------------ restrictions
    def _lookup(self, dotted):
        node = self
        for part in dotted.split("."):
            if not isinstance(node, ParamsDict) or part not in node:
                return False, None
            node = node[part]
        return True, node

    def _operand(self, token, restriction):
        found, value = self._lookup(token)
        if found:
            return token, value
        constant = yaml_io.load_yaml_string(token, source=f"restriction '{restriction}'")
        if isinstance(constant, str) and "." in token:
            raise ParamsError(f"restriction '{restriction}' names unknown parameter '{token}'")
        return None, constant

    def validate(self):
        """Checks every restriction.

        Raises:
          ParamsError: a restriction is malformed or violated; the message names both sides
            and their values.
        """
        for restriction in self._restrictions:
            match = _RESTRICTION_PATTERN.match(restriction)
            if not match:
                raise ParamsError(
                    f"malformed restriction '{restriction}': expected "
                    "'<key> <op> <key or constant>' with op in == != < <= > >="
                )
            left, op, right = match.groups()
            left_key, left_value = self._operand(left, restriction)
            right_key, right_value = self._operand(right, restriction)
            if left_key is None and right_key is None:
                raise ParamsError(f"restriction '{restriction}' names no parameter")
            if left_value is None or right_value is None:
                if op in ("==", "!="):
                    ok = _COMPARATORS[op](left_value, right_value)
                else:
                    continue  # An unset (None) value cannot violate an ordering.
            else:
                try:
                    ok = _COMPARATORS[op](left_value, right_value)
                except TypeError:
                    ok = False
            if not ok:

                def show(key, value):
                    return f"{key}={value!r}" if key else repr(value)

                raise ParamsError(
                    f"restriction violated: {show(left_key, left_value)} {op} "
                    f"{show(right_key, right_value)} is false ('{restriction}')"
                )


def save_params_dict_to_yaml(params, path):
    """Writes the resolved params to `path` as YAML (directories are created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp_path = f"{path}.tmp"
    with open(tmp_path, "w", encoding="utf-8") as f:
        f.write(params.to_yaml())
    os.replace(tmp_path, path)


def read_yaml_to_params_dict(path):
    """Reads a YAML file (e.g. a saved params.yaml) into a ParamsDict."""
    return ParamsDict(yaml_io.load_yaml_file(path))
