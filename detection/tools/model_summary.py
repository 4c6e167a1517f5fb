"""Parameters and forward-pass arithmetic of a model, per component, without data or training.

    python -m detection.tools.model_summary --model=retinanet \
        [--config_file=F ...] [--params_override=S]

Builds the network from the params (float32; the counts do not depend on the compute dtype)
and prints, for the backbone, the decoder (FPN, NAS-FPN; none for `identity`), the head and
the whole network: all and trainable parameters, and the multiply-accumulates of one forward
pass of a batch of 1 at the parser's `output_size`.

Units: "GMACs" are 1e9 multiply-accumulates of convolutions and matrix products (what TF Model
Garden, torchvision and timm tables call "FLOPs"); "GFLOPs" are 2 x GMACs (one multiply and
one add each). Element-wise work (batch norm, activations, additions, upsampling) is not
counted. Each component is traced on its own from zero inputs of its static input shapes, so
the component rows add up to the separately traced whole network only if nothing runs outside them.

Bad flags or params end the process with exit code 2 and one line on stderr.
"""

import dataclasses
import math
import sys

from detection.configs import loader
from detection.core import exit_codes
from detection.hyperparameters import ParamsError, registry
from detection.main_lib import OneLineParser, UsageError, add_params_flags

PROG = "model_summary"


@dataclasses.dataclass(frozen=True)
class ComponentSummary:
    """Counts of one part of a network.

    Attributes:
      name: 'backbone', the decoder ('fpn', 'nasfpn'; none for 'identity'), 'head' or
        'total'.
      params: number of scalars in all weights (batch-norm moving statistics included).
      trainable_params: number of scalars in the trainable weights.
      macs: multiply-accumulates of one forward pass (convolutions and matrix products).
    """

    name: str
    params: int
    trainable_params: int
    macs: int

    @property
    def gmacs(self):
        return self.macs / 1e9

    @property
    def gflops(self):
        return 2 * self.macs / 1e9


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """What `summarize` found: the components in call order, then the whole network.

    Attributes:
      description: one line naming the architecture.
      input_shape: `(1, H, W, 3)`, the traced input.
      components: ComponentSummary rows, the last one named 'total' (the whole network,
        counted on its own rather than summed).
    """

    description: str
    input_shape: tuple
    components: tuple


def _count(weights):
    return sum(math.prod(int(d) for d in w.shape) for w in weights)


def _row(name, layer, macs):
    return ComponentSummary(
        name=name,
        params=_count(layer.weights),
        trainable_params=_count(layer.trainable_weights),
        macs=int(macs),
    )


def _backbone_text(params):
    """The backbone's name as the zoo tables spell it: resnet-50, spinenet-49S, efficientnet-b0."""
    name = params.architecture.backbone
    if name == "resnet":
        return f"resnet-{params.resnet.resnet_depth}"
    if name in ("spinenet", "spinenet_mbconv"):
        return f"{name}-{params[name].model_id}"
    return name


def _decoder_text(params):
    """The decoder with the settings that set its size, e.g. 'nasfpn 7 x 256'."""
    architecture = params.architecture
    name = architecture.multilevel_features
    levels = f"P{architecture.min_level}-P{architecture.max_level}"
    if name == "fpn":
        return f"fpn {levels} ({params.fpn.fpn_feat_dims} ch)"
    if name == "nasfpn":
        p = params.nasfpn
        return f"nasfpn {levels} ({p.num_repeats} cells x {p.fpn_feat_dims} ch, {p.block_fn})"
    if name == "identity":
        return f"identity (backbone {levels} to the head)"
    return f"{name} {levels}"


def _retinanet_summary(params):
    # Heavy imports (TensorFlow, Keras) only once the flags and params are known to be valid.
    import tensorflow as tf

    from detection.modeling import flops
    from detection.modeling.heads.factory import anchors_per_location
    from detection.modeling.networks import factory as network_factory

    height, width = (int(v) for v in params.retinanet_parser.output_size)
    input_shape = (1, height, width, 3)
    network = network_factory.retinanet_network_from_params(params, dtype="float32")
    # Weight shapes do not depend on the image size: build on the smallest input whose
    # coarsest level is still 1x1, which is much faster than an eager pass at full size.
    side = 2 ** int(params.architecture.max_level)
    network(tf.zeros([1, side, side, 3]), training=False)

    def _shapes(tensors):
        return {level: tuple(t.shape) for level, t in tensors.items()}

    def _pyramid(x):
        features = network.backbone(x, training=False)
        if network.fpn is not None:
            features = network.fpn(features, training=False)
        return features

    # Static shapes of the component inputs at the real size, from a symbolic trace.
    spec = tf.TensorSpec(input_shape, tf.float32)
    backbone_shapes = _shapes(
        tf.function(lambda x: network.backbone(x, training=False))
        .get_concrete_function(spec)
        .structured_outputs
    )
    pyramid_shapes = _shapes(tf.function(_pyramid).get_concrete_function(spec).structured_outputs)

    def _from_zeros(layer, shapes):
        # The zero inputs are graph constants, so the traced graph holds exactly this
        # layer's operations (tracing folds nothing).
        return lambda unused: layer({k: tf.zeros(s) for k, s in shapes.items()}, training=False)

    architecture = params.architecture
    head = params.retinanet_head
    rows = [
        _row(
            "backbone",
            network.backbone,
            flops.count_macs(lambda x: network.backbone(x, training=False), input_shape),
        )
    ]
    # `identity` has no decoder: the backbone's levels go to the head, so no row.
    if network.fpn is not None:
        macs = flops.count_macs(_from_zeros(network.fpn, backbone_shapes), (1,))
        rows.append(_row(architecture.multilevel_features, network.fpn, macs))
    rows.append(
        _row(
            "head", network.head, flops.count_macs(_from_zeros(network.head, pyramid_shapes), (1,))
        )
    )
    rows.append(
        _row("total", network, flops.count_macs(lambda x: network(x, training=False), input_shape))
    )
    description = (
        f"RetinaNet: {_backbone_text(params)}, {_decoder_text(params)}, head "
        f"{head.num_convs}x{head.num_filters}"
        + (" separable" if head.use_separable_conv else "")
        + f", {architecture.num_classes} classes, {anchors_per_location(params)} anchors/location"
    )
    return ModelSummary(description=description, input_shape=input_shape, components=tuple(rows))


_SUMMARIES = {"retinanet": _retinanet_summary}


def summarize(params):
    """Counts parameters and forward MACs of `params.type`'s network, per component.

    Args:
      params: a loaded ParamsDict.

    Returns:
      A ModelSummary.

    Raises:
      ParamsError: the model type is not implemented, or a value is rejected when the
        parts are built (the message names it).
    """
    from detection.model_fns import factory as model_fn_factory

    # The model-fn factory is the one list of implemented models; it names what exists.
    model_fn_factory.model_fn_from_params(params)
    summary_fn = registry.lookup(_SUMMARIES, params.type, "model (per-component summary)")
    try:
        return summary_fn(params)
    except ParamsError:
        raise
    except ValueError as error:
        # Constructor checks of the layers (e.g. fpn_feat_dims < 1) name the bad value.
        raise ParamsError(str(error).splitlines()[0]) from None


def format_summary(summary):
    """The summary as a markdown table with a header line and a note on units."""
    batch, height, width, channels = summary.input_shape
    lines = [
        summary.description,
        f"input {batch}x{height}x{width}x{channels} (batch x height x width x channels)",
        "",
        "| component | params | trainable params | GMACs | GFLOPs (2 x MACs) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in summary.components:
        lines.append(
            f"| {row.name} | {row.params:,} ({row.params / 1e6:.2f} M) | "
            f"{row.trainable_params:,} | {row.gmacs:.2f} | {row.gflops:.2f} |"
        )
    lines += [
        "",
        "GMACs: 1e9 multiply-accumulates of convolutions and matrix products in one "
        'forward pass (TF Model Garden, torchvision and timm call this number "FLOPs"); '
        "GFLOPs = 2 x GMACs. Element-wise ops (batch norm, activations, additions) are "
        "not counted. params include batch-norm moving statistics; trainable params "
        "do not.",
    ]
    return "\n".join(lines)


def build_parser():
    parser = OneLineParser(
        prog=f"python -m detection.tools.{PROG}",
        allow_abbrev=False,
        description=__doc__.split("\n\n")[0],
    )
    add_params_flags(parser)
    return parser


def main(argv=None):
    """Prints the summary table; returns the exit code (2 on a bad flag or param)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        params = loader.load_params(args.model, args.config_file, args.params_override)
        summary = summarize(params)
    except (UsageError, ParamsError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return exit_codes.USAGE
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
