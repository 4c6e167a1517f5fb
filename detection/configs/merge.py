"""Deep merge of default-parameter dicts (how model configs extend the base)."""

import copy


def merge_dicts(base, overlay):
    """Returns a deep copy of `base` with `overlay` merged in (overlay wins, dicts recurse).

    New keys in `overlay` are appended after the base's keys, so dumped YAML keeps the
    original framework's key order.
    """
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
