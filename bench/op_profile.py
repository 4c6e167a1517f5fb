"""Where a profiled step's time goes: TensorFlow op time per op type and per model component.

Reads the XSpace files (`*.xplane.pb`) that `tf.profiler.experimental` writes and adds up the
durations of the host's TensorFlow op events, which are named `<op name>:<op type>`. Function
calls and control flow (`StatefulPartitionedCall`, `While`...) enclose other ops, so they are
left out rather than counted twice. The component of an op is the first of `COMPONENTS` in its
name (gradient ops carry the forward op's scope, so a component's row includes its backward
pass); the rest is "other" (the optimizer update, losses, proposals, sampling...).

Durations add up over threads: on 2 cores the total can exceed the wall time of the steps.
"""

import collections
import glob
import os
import re

from tensorflow.tsl.profiler.protobuf import xplane_pb2

# Enclosing events: their time is that of the ops inside them.
_ENCLOSING = {
    "StatefulPartitionedCall",
    "PartitionedCall",
    "While",
    "StatelessWhile",
    "If",
    "StatelessIf",
    "Case",
}

# Scope names of the (Cascade) Mask R-CNN and RetinaNet parts, in the order to try them.
COMPONENTS = (
    "resnet",
    "fpn",
    "rpn_head",
    "frcnn_layer_0",
    "frcnn_layer_1",
    "frcnn_layer_2",
    "mask_head",
    "retinanet_head",
)


def _op_events(space):
    """Yields (op name, op type, duration seconds) of every host TensorFlow op event.

    TensorFlow op events are the ones with a display name (the op type); their name is
    `<op name>:<op type>`.
    """
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        metadata = dict(plane.event_metadata)
        for line in plane.lines:
            for event in line.events:
                meta = metadata.get(event.metadata_id)
                if meta is None or not meta.display_name or meta.display_name in _ENCLOSING:
                    continue
                name = meta.name.rpartition(":")[0] or meta.name
                yield name, meta.display_name, event.duration_ps * 1e-12


def _component(op_name):
    """The first of COMPONENTS among the scopes of `op_name` (Keras may suffix `_<n>`)."""
    parts = [re.sub(r"_\d+$", "", part) for part in op_name.split("/")]
    parts += op_name.split("/")  # frcnn_layer_0 ends in a digit of its own
    return next((c for c in COMPONENTS if c in parts), "other")


def summarize(log_dir):
    """{'by_type': Counter, 'by_component': Counter} of op seconds in `log_dir`'s profiles."""
    by_type, by_component = collections.Counter(), collections.Counter()
    paths = glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {log_dir}")
    for path in paths:
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for name, op_type, seconds in _op_events(space):
            by_type[op_type] += seconds
            by_component[_component(name)] += seconds
    return {"by_type": by_type, "by_component": by_component}


def format_summary(summary, num_steps, top=12):
    """Markdown tables: seconds of op time per step by component and by the top op types."""
    lines = []
    for title, counter, limit in (
        ("component", summary["by_component"], None),
        ("op type", summary["by_type"], top),
    ):
        total = sum(counter.values())
        lines += [f"| {title} | op s / step | share |", "|---|---:|---:|"]
        for key, seconds in counter.most_common(limit):
            lines.append(f"| {key} | {seconds / num_steps:.2f} | {seconds / total:.0%} |")
        lines += [f"| total | {total / num_steps:.2f} | |", ""]
    return "\n".join(lines)
