"""Warm start: initialize a new model from another run's checkpoint, by variable name.

Used only when model_dir has no checkpoint of its own (`train.checkpoint.path`, `.prefix`,
`.skip_variables_regex`). Each model variable is named by its Keras path
(`retinanet/class_net/kernel`, the TF1 name without `:0`). A variable is considered when its
name starts with `prefix` (all when '') and matches neither form of `skip_variables_regex`
(`re.match` on the name with or without `:0`), as in the original framework.

The checkpoint may be
- one written by this executor (object-based): the names are the `full_name`s recorded in its
  object graph, which are the saving model's variable paths; optimizer slots are ignored;
- a name-based (TF1-style) checkpoint: the names are its keys.

A considered variable is loaded from the checkpoint entry with the same name, else from the one
entry whose name ends with `/<name>` (a checkpoint saved under an outer scope). Variables with
no entry or another shape (e.g. a class head for another `num_classes`) keep their
initialization and are listed in the log; this is never fatal.
"""

import logging
import re

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

_log = logging.getLogger(__name__)
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def resolve_checkpoint(path):
    """A checkpoint prefix from a directory (its latest) or a prefix; ValueError if none."""
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise ValueError(f"train.checkpoint.path={path!r} is a directory without checkpoints")
        return latest
    if tf.io.gfile.exists(path + ".index") or tf.io.gfile.exists(path):
        return path
    raise ValueError(
        f"train.checkpoint.path={path!r}: no such checkpoint (expected a directory "
        "or a prefix with a .index file)"
    )


def checkpoint_entries(path):
    """Maps variable name -> (checkpoint key, shape) for the model variables of a checkpoint."""
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    if _OBJECT_GRAPH_KEY not in shapes:
        return {name: (name, shape) for name, shape in shapes.items()}
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
    entries = {}
    for node in graph.nodes:
        for attribute in node.attributes:
            key = attribute.checkpoint_key
            if attribute.name != "VARIABLE_VALUE" or key not in shapes:
                continue
            # Optimizer slots and counters are not model variables; the model's own variables
            # may be reached through the optimizer's list of trained variables.
            if key.startswith("save_counter") or (
                key.startswith("optimizer/")
                and not key.startswith("optimizer/_trainable_variables/")
            ):
                continue
            name = attribute.full_name
            name = name[:-2] if name.endswith(":0") else name
            entries[name] = (key, shapes[key])
    return entries


def _variable_name(variable):
    path = getattr(variable, "path", None)
    return path if path else variable.name.split(":")[0]


def warm_start(model, checkpoint_path, prefix="", skip_variables_regex=""):
    """Assigns matching checkpoint values to `model.variables`.

    Args:
      model: a built keras.Model (inside the strategy scope, so assignments reach every
        replica).
      checkpoint_path: a checkpoint prefix or a directory (its latest checkpoint).
      prefix: only variables whose name starts with it are considered.
      skip_variables_regex: variables matching it are not loaded.

    Returns:
      (loaded, skipped): loaded variable names, and `(name, reason)` for skipped ones.
    """
    path = resolve_checkpoint(checkpoint_path)
    try:
        skip = re.compile(skip_variables_regex) if skip_variables_regex else None
    except re.error as error:
        raise ValueError(
            f"train.checkpoint.skip_variables_regex={skip_variables_regex!r} is not "
            f"a valid regular expression: {error}"
        ) from error
    entries = checkpoint_entries(path)
    reader = tf.train.load_checkpoint(path)
    loaded, skipped = [], []
    for variable in model.variables:
        name = _variable_name(variable)
        if prefix and not name.startswith(prefix):
            continue
        if skip and (skip.match(name) or skip.match(name + ":0")):
            skipped.append((name, "matches skip_variables_regex"))
            continue
        entry = entries.get(name)
        if entry is None:
            candidates = [n for n in entries if n.endswith("/" + name)]
            if len(candidates) == 1:
                entry = entries[candidates[0]]
            elif len(candidates) > 1:
                skipped.append((name, f"ambiguous in checkpoint: {candidates[:3]}"))
                continue
        if entry is None:
            skipped.append((name, "not in checkpoint"))
            continue
        key, shape = entry
        if list(shape) != list(variable.shape):
            skipped.append((name, f"shape {list(shape)} in checkpoint vs {list(variable.shape)}"))
            continue
        variable.assign(tf.cast(reader.get_tensor(key), variable.dtype))
        loaded.append(name)
    _log.info(
        "warm start from %s: loaded %d variables, skipped %d", path, len(loaded), len(skipped)
    )
    for name, reason in skipped:
        _log.warning("warm start skipped %s: %s", name, reason)
    return loaded, skipped
