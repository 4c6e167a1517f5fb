"""The one lookup every factory (parsers, backbones, decoders, heads, evaluators...) uses.

A family is an explicit dict `{name: builder}` in its `factory.py`; `lookup` turns an unknown
name into a ParamsError that names the key and lists what exists, so `backbone: spinenet` on a
tree without SpineNet fails in one line instead of deep inside a layer.
"""

from detection.hyperparameters.errors import ParamsError


def lookup(registry, name, key):
    """Returns `registry[name]`.

    Args:
      registry: {name: builder} of one family.
      name: the value of the params key.
      key: the dotted params key, for the message (e.g. 'architecture.backbone').

    Raises:
      ParamsError: `name` is not in the registry.
    """
    if name not in registry:
        raise ParamsError(
            f"{key}={name!r} is not implemented; available: {', '.join(sorted(registry))}"
        )
    return registry[name]


def build(registry, name, key, *args, **kwargs):
    """`lookup(...)(*args, **kwargs)`, with a constructor's ValueError turned into a ParamsError.

    Layers check their arguments with ValueErrors that name the bad value; to the user they are
    bad params, reported in one line under the family's key.
    """
    builder = lookup(registry, name, key)
    try:
        return builder(*args, **kwargs)
    except ParamsError:
        raise
    except ValueError as error:
        raise ParamsError(f"{key}={name!r}: {str(error).splitlines()[0]}") from None
