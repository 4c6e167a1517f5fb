"""Counting the arithmetic of one forward pass.

Two independent counts of the same traced graph (nothing is executed):

- `count_macs`: walks the graph's ops and adds the multiply-accumulates of
  convolutions (plain, transposed, depthwise) and matrix products (two-operand
  einsums included) from their static shapes. These dominate detection networks;
  element-wise ops (batch norm, activations, additions) are left out.
- `profiler_flops`: TensorFlow's graph profiler (`float_operation`), which
  counts a multiply-accumulate as 2 FLOPs and also counts some element-wise
  ops.

Published tables differ in what they call "FLOPs": TF Model Garden, the
torchvision and timm tables report multiply-adds (profiler FLOPs / 2), so
compare `macs` with those.
"""

import dataclasses

import numpy as np
import tensorflow as tf

_CONV_OPS = ("Conv2D", "Conv3D")
_DEPTHWISE_OPS = ("DepthwiseConv2dNative",)
# A transposed convolution is the gradient of a convolution with respect to its input.
_TRANSPOSED_CONV_OPS = ("Conv2DBackpropInput", "Conv3DBackpropInputV2")
_MATMUL_OPS = ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "BatchMatMul")
_EINSUM_OPS = ("Einsum",)


@dataclasses.dataclass(frozen=True)
class FlopsReport:
    """Counts for one forward pass.

    Attributes:
      macs: multiply-accumulates of convolutions and matrix products.
      profiler_flops: the TF profiler's float-op count (about `2 * macs`), or
        None when the profiler is unavailable.
    """

    macs: int
    profiler_flops: int | None

    @property
    def gmacs(self):
        return self.macs / 1e9


def _static_shape(tensor, op):
    shape = tensor.shape
    if not shape.is_fully_defined():
        raise ValueError(
            f"flops: op {op.name} ({op.type}) has a tensor of non-static "
            f"shape {shape}; trace with a fully defined input shape"
        )
    return shape.as_list()


def _op_macs(op):
    if op.type in _CONV_OPS:
        kernel = _static_shape(op.inputs[1], op)
        out = _static_shape(op.outputs[0], op)
        # kernel [*spatial, c_in, c_out]; every output element sums
        # prod(spatial) * c_in products.
        return int(np.prod(out)) * int(np.prod(kernel[:-1]))
    if op.type in _TRANSPOSED_CONV_OPS:
        # inputs: (output size, kernel [*spatial, c_out, c_in], input): every input element
        # is multiplied into prod(spatial) * c_out outputs.
        kernel = _static_shape(op.inputs[1], op)
        inputs = _static_shape(op.inputs[2], op)
        return int(np.prod(inputs)) * int(np.prod(kernel[:-1]))
    if op.type in _DEPTHWISE_OPS:
        kernel = _static_shape(op.inputs[1], op)
        out = _static_shape(op.outputs[0], op)
        return int(np.prod(out)) * int(np.prod(kernel[:-2]))
    if op.type in _MATMUL_OPS:
        a = _static_shape(op.inputs[0], op)
        out = _static_shape(op.outputs[0], op)
        transpose_a = op.get_attr("transpose_a") if op.type == "MatMul" else op.get_attr("adj_x")
        inner = a[-2] if transpose_a else a[-1]
        return int(np.prod(out)) * int(inner)
    if op.type in _EINSUM_OPS and len(op.inputs) == 2:
        return _einsum_macs(op)
    return 0


def _einsum_macs(op):
    """Products of a two-operand einsum: output elements x sizes of the summed-out labels."""
    equation = op.get_attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    inputs, output = equation.replace(" ", "").split("->")
    sizes = {}
    for spec, tensor in zip(inputs.split(","), op.inputs):
        shape = _static_shape(tensor, op)
        left, _, right = spec.partition("...")
        labels = list(left) + [None] * (len(shape) - len(left) - len(right)) + list(right)
        sizes.update({label: size for label, size in zip(labels, shape) if label})
    contracted = [label for label in sizes if label not in output]
    out = _static_shape(op.outputs[0], op)
    return int(np.prod(out)) * int(np.prod([sizes[label] for label in contracted]))


_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")


def _find_function(graph, name):
    while graph is not None:
        function = getattr(graph, "_functions", {}).get(name)
        if function is not None:
            return function
        graph = getattr(graph, "outer_graph", None)
    return None


def _graph_macs(graph):
    """MACs of `graph`, descending into called functions once per call.

    The bodies of control flow (`If`, `While`) are not counted: detection
    forward passes have none, and a loop's trip count is not static anyway.
    """
    total = 0
    for op in graph.get_operations():
        if op.type in _CALL_OPS:
            function = _find_function(graph, op.get_attr("f").name)
            if function is not None and hasattr(function, "graph"):
                total += _graph_macs(function.graph)
            continue
        total += _op_macs(op)
    return total


def trace_forward(fn, input_shape, dtype=tf.float32):
    """Traces `fn(x)` for one input of `input_shape` into a graph.

    Args:
      fn: callable taking one tensor (e.g. `lambda x: model(x,
        training=False)`); its variables must already exist.
      input_shape: full static shape, e.g. `(1, 640, 640, 3)`.
      dtype: input dtype.

    Returns:
      The `tf.Graph` of the traced concrete function.
    """
    concrete = tf.function(fn).get_concrete_function(tf.TensorSpec(input_shape, dtype))
    return concrete.graph


def count_macs(fn, input_shape, dtype=tf.float32):
    """Multiply-accumulates of convolutions and matmuls in one `fn` call."""
    return _graph_macs(trace_forward(fn, input_shape, dtype))


def profiler_flops(graph):
    """The TF graph profiler's float-op count of `graph`, or None.

    Returns None if the profiler cannot run here (it is a TF1-era tool that
    may be missing from some builds).
    """
    try:
        options = (
            tf.compat.v1.profiler.ProfileOptionBuilder(
                tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
            )
            .with_empty_output()
            .build()
        )
        info = tf.compat.v1.profiler.profile(graph=graph, options=options)
    except (AttributeError, ImportError, tf.errors.OpError):
        return None
    return int(info.total_float_ops)


def forward_flops(fn, input_shape, dtype=tf.float32):
    """Both counts for one forward pass of `fn` on `input_shape`.

    Args:
      fn: callable taking the input tensor, variables already built.
      input_shape: full static input shape (batch included).
      dtype: input dtype.

    Returns:
      A `FlopsReport`.
    """
    graph = trace_forward(fn, input_shape, dtype)
    return FlopsReport(macs=_graph_macs(graph), profiler_flops=profiler_flops(graph))
