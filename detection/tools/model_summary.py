"""Parameters and forward-pass arithmetic of a model, per component, without data or training.

    python -m detection.tools.model_summary --model=retinanet|classification|segmentation \
        [--config_file=F ...] [--params_override=S]

Builds the network from the params (float32; the counts do not depend on the compute dtype)
and prints, for the backbone, the decoder (FPN, NAS-FPN; none for `identity`), each head (RetinaNet: one; Mask R-CNN: the
RPN, the box head of each cascade stage, the mask head) and the whole network: all and
trainable parameters, and the multiply-accumulates of one forward pass of a batch of 1 at the
parser's `output_size` (Mask R-CNN at inference: box heads on the test proposals, the mask
head on the detections).

Units: "GMACs" are 1e9 multiply-accumulates of convolutions and matrix products (what TF Model
Garden, torchvision and timm tables call "FLOPs"); "GFLOPs" are 2 x GMACs (one multiply and
one add each). Element-wise work (batch norm, activations, additions, upsampling) is not
counted. Each component is traced on its own from zero inputs of its static input shapes, so
the three rows add up to the separately traced whole network only if nothing runs outside them.

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
      name: 'backbone', the decoder ('fpn', 'nasfpn'; none for 'identity'), a head ('head',
        'rpn head', 'box head 0', 'mask head'...) or
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


def _shapes(tensors):
    return {level: tuple(t.shape) for level, t in tensors.items()}


def _from_zeros(layer, *shapes, **kwargs):
    """`layer` called on zero inputs of `shapes` (each a shape or a {level: shape} dict).

    The zero inputs are graph constants, so the traced graph holds exactly this layer's
    operations (tracing folds nothing).
    """

    import tensorflow as tf

    def zeros(shape):
        if isinstance(shape, dict):
            return {k: tf.zeros(s) for k, s in shape.items()}
        return tf.zeros(shape)

    return lambda unused: layer(*[zeros(s) for s in shapes], training=False, **kwargs)


def _pyramid_rows(network, input_shape, decoder_name):
    """Backbone and decoder rows of `network` at `input_shape`, and the pyramid's shapes.

    The networks hold their parts as `network.backbone` / `network.fpn` (None for
    `identity`: no decoder row, the backbone's levels are the pyramid); the static input
    shapes of each part come from a symbolic trace (nothing runs).
    """
    import tensorflow as tf

    from detection.modeling import flops

    def pyramid(x):
        features = network.backbone(x, training=False)
        if network.fpn is not None:
            features = network.fpn(features, training=False)
        return features

    spec = tf.TensorSpec(input_shape, tf.float32)
    backbone_shapes = _shapes(
        tf.function(lambda x: network.backbone(x, training=False))
        .get_concrete_function(spec)
        .structured_outputs
    )
    pyramid_shapes = _shapes(tf.function(pyramid).get_concrete_function(spec).structured_outputs)
    backbone_macs = flops.count_macs(lambda x: network.backbone(x, training=False), input_shape)
    rows = [_row("backbone", network.backbone, backbone_macs)]
    if network.fpn is not None:
        fpn_macs = flops.count_macs(_from_zeros(network.fpn, backbone_shapes), (1,))
        rows.append(_row(decoder_name, network.fpn, fpn_macs))
    return tuple(rows), pyramid_shapes


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


def _pyramid_description(params):
    return f"{_backbone_text(params)}, {_decoder_text(params)}"


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
    pyramid, fpn_shapes = _pyramid_rows(
        network, input_shape, params.architecture.multilevel_features
    )
    head_macs = flops.count_macs(_from_zeros(network.head, fpn_shapes), (1,))
    total_macs = flops.count_macs(lambda x: network(x, training=False), input_shape)
    head = params.retinanet_head
    description = (
        f"RetinaNet: {_pyramid_description(params)}, head "
        f"{head.num_convs}x{head.num_filters}"
        + (" separable" if head.use_separable_conv else "")
        + f", {params.architecture.num_classes} classes, "
        f"{anchors_per_location(params)} anchors/location"
    )
    rows = pyramid + (
        _row("head", network.head, head_macs),
        _row("total", network, total_macs),
    )
    return ModelSummary(description=description, input_shape=input_shape, components=rows)


def _staged_summary(description, network, stages, input_shape):
    """Rows for `stages` [(name, layer, fn)] that map the images, stage by stage, to the
    network's output (each `fn` takes the previous stage's output), then the total.

    Each stage after the first is counted from zero inputs of the static shapes the stages
    before it produce, so its MACs are its own.
    """
    import tensorflow as tf

    from detection.modeling import flops

    def upto(count):
        def run(x):
            for _, _, fn in stages[:count]:
                x = fn(x)
            return x

        return run

    spec = tf.TensorSpec(input_shape, tf.float32)
    rows = []
    for index, (name, layer, fn) in enumerate(stages):
        if index == 0:
            macs = flops.count_macs(fn, input_shape)
        else:
            # TensorSpecs (leaves of tf.nest) of the stage's input at the real image size.
            specs = tf.nest.map_structure(
                lambda t: tf.TensorSpec(t.shape, t.dtype),
                tf.function(upto(index)).get_concrete_function(spec).structured_outputs,
            )

            def from_zeros(unused, fn=fn, specs=specs):
                return fn(tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), specs))

            macs = flops.count_macs(from_zeros, (1,))
        rows.append(_row(name, layer, macs))
    rows.append(_row("total", network, flops.count_macs(lambda x: network(x), input_shape)))
    return ModelSummary(description=description, input_shape=input_shape, components=tuple(rows))


def _classification_summary(params):
    import tensorflow as tf

    from detection.modeling.networks import factory as network_factory

    height, width = (int(v) for v in params.classification_parser.output_size)
    network = network_factory.classification_network_from_params(params, dtype="float32")
    network(tf.zeros([1, 64, 64, 3]), training=False)
    stages = [
        ("backbone", network.backbone, lambda x: network.backbone(x, training=False)),
        ("head", network.head, lambda f: network.head(f, training=False)),
    ]
    head = params.classification_head
    description = (
        f"Classification: {_backbone_text(params)}, head aggregation "
        f"'{head.aggregation}' (endpoints {head.endpoints_num_filters}, dropout "
        f"{head.dropout_rate}), {params.architecture.num_classes} classes"
    )
    return _staged_summary(description, network, stages, (1, height, width, 3))


def _segmentation_summary(params):
    import tensorflow as tf

    from detection.modeling.networks import factory as network_factory
    from detection.modeling.networks.segmentation_network import fuse_pyramid

    architecture, head = params.architecture, params.segmentation_head
    height, width = (int(v) for v in params.segmentation_parser.output_size)
    network = network_factory.segmentation_network_from_params(params, dtype="float32")
    side = 2 ** int(architecture.max_level)
    network(tf.zeros([1, side, side, 3]), training=False)
    stages = [("backbone", network.backbone, lambda x: network.backbone(x, training=False))]
    if network.aspp is not None:

        def aspp(features):
            top = str(max(int(k) for k in features))
            return dict(features, **{top: network.aspp(features[top], training=False)})

        stages.append(("aspp", network.aspp, aspp))
    if network.decoder is not None:
        stages.append(("decoder", network.decoder, lambda f: network.decoder(f, training=False)))
    fuse = architecture.use_pyramid_fusion

    def segmentation_head(features):
        if fuse:  # no weights and no MACs of its own: counted with the head
            features = dict(features, **{str(head.level): fuse_pyramid(features, head.level)})
        return network.head(features, training=False)

    stages.append(("head", network.head, segmentation_head))
    description = (
        f"Segmentation: {_backbone_text(params)}"
        + (" + ASPP" if network.aspp is not None else "")
        + f", {architecture.multilevel_features} P{architecture.min_level}-"
        f"P{architecture.max_level}"
        + (" fused" if fuse else "")
        + f", head on level {head.level} ({head.num_convs} convs, upsample x"
        f"{head.upsample_factor}), {architecture.num_classes} classes"
    )
    return _staged_summary(description, network, stages, (1, height, width, 3))


def _maskrcnn_summary(params):
    """Backbone, FPN, RPN head, one row per box head (cascade stage), mask head, total.

    Counted at inference: each box head on `roi_proposal.test_rpn_post_nms_top_k` ROIs, the
    mask head on `postprocess.max_total_size` detections. The total traces the whole network,
    so it also holds the matrix products outside the heads (ROI align, proposal and
    detection bookkeeping), which the rows above it leave out.
    """
    import tensorflow as tf

    from detection.dataloader import factory as dataloader_factory
    from detection.modeling import flops
    from detection.modeling.heads.factory import anchors_per_location
    from detection.modeling.networks import factory as network_factory
    from detection.modeling.networks.maskrcnn_network import BOX_ROI_SIZE

    height, width = (int(v) for v in params.maskrcnn_parser.output_size)
    input_shape = (1, height, width, 3)
    anchors = dataloader_factory.anchors_from_params(params, [height, width])
    network = network_factory.maskrcnn_network_from_params(
        params, anchors.unpack_labels(anchors.numpy_boxes), dtype="float32"
    )
    info = tf.constant([[[height, width], [height, width], [1.0, 1.0], [0.0, 0.0]]])

    def forward(images):
        return network({"images": images, "image_info": info}, training=False)

    # A symbolic trace builds every variable (the inference path reaches every head) without
    # running the network.
    tf.function(forward).get_concrete_function(tf.TensorSpec(input_shape, tf.float32))
    pyramid, fpn_shapes = _pyramid_rows(
        network, input_shape, params.architecture.multilevel_features
    )
    rows = list(pyramid)
    rpn_macs = flops.count_macs(_from_zeros(network.rpn_head, fpn_shapes), (1,))
    rows.append(_row("rpn head", network.rpn_head, rpn_macs))
    channels = next(iter(fpn_shapes.values()))[-1]
    num_rois = params.roi_proposal.test_rpn_post_nms_top_k
    roi_shape = (1, num_rois, BOX_ROI_SIZE, BOX_ROI_SIZE, channels)
    stages = len(network.box_heads)
    for stage, head in enumerate(network.box_heads):
        name = "box head" if stages == 1 else f"box head {stage}"
        rows.append(_row(name, head, flops.count_macs(_from_zeros(head, roi_shape), (1,))))
    if network.mask_head is not None:
        side = params.architecture.mask_target_size // 2
        detections = params.postprocess.max_total_size
        mask_macs = flops.count_macs(
            lambda unused: network.mask_head(
                tf.zeros((1, detections, side, side, channels)),
                tf.ones((1, detections), tf.int32),
                training=False,
            ),
            (1,),
        )
        rows.append(_row("mask head", network.mask_head, mask_macs))
    rows.append(_row("total", network, flops.count_macs(forward, input_shape)))
    box = params.frcnn_head
    mask = params.mrcnn_head
    kind = "Cascade Mask R-CNN" if stages > 1 else "Mask R-CNN"
    if network.mask_head is None:
        kind = kind.replace("Mask", "Faster")
    description = (
        f"{kind}: {_pyramid_description(params)}, RPN {params.rpn_head.num_convs}x"
        f"{params.rpn_head.num_filters} ({anchors_per_location(params, 'rpn_head')} "
        f"anchors/location), box head {box.num_convs} conv + {box.num_fcs} fc "
        f"({box.fc_dims})" + (f" x {stages} stages" if stages > 1 else "")
    )
    if network.mask_head is not None:
        description += f", mask head {mask.num_convs}x{mask.num_filters}"
    description += f", {params.architecture.num_classes} classes; {num_rois} ROIs per box head" + (
        f", {params.postprocess.max_total_size} per mask head" if network.mask_head else ""
    )
    return ModelSummary(description=description, input_shape=input_shape, components=tuple(rows))


def _shapemask_summary(params):
    """RetinaNet's rows plus the shape prior, coarse and fine mask heads, at inference.

    The mask heads are counted on `postprocess.max_total_size` detections; the total traces the
    whole inference (network, detection generator, mask branch). The shape priors are constants
    (the prior file), not parameters.
    """
    import tensorflow as tf

    from detection.model_fns.retinanet_detector import RetinaNetDetector
    from detection.modeling import flops
    from detection.modeling.heads.factory import anchors_per_location
    from detection.modeling.networks import factory as network_factory
    from detection.ops import boxes as box_ops

    height, width = (int(v) for v in params.shapemask_parser.output_size)
    input_shape = (1, height, width, 3)
    network = network_factory.shapemask_network_from_params(params, dtype="float32")
    side = 2 ** int(params.architecture.max_level)
    outputs = network(tf.zeros([1, side, side, 3]), training=False)
    box = tf.constant([[[0.0, 0.0, side / 2, side / 2]]])
    network.mask_outputs(outputs["fpn_features"], box, box, tf.ones([1, 1], tf.int32))

    spec = tf.TensorSpec(input_shape, tf.float32)
    backbone_shapes = {
        level: tuple(t.shape)
        for level, t in tf.function(lambda x: network.backbone(x, training=False))
        .get_concrete_function(spec)
        .structured_outputs.items()
    }
    fpn_shapes = {
        level: tuple(t.shape)
        for level, t in tf.function(lambda x: network.pyramid_features(x, training=False))
        .get_concrete_function(spec)
        .structured_outputs.items()
    }

    def zeros(shapes):
        return {k: tf.zeros(s) for k, s in shapes.items()}

    detections = int(params.postprocess.max_total_size)
    crop = int(params.shapemask_head.mask_crop_size)
    channels = int(params.shapemask_head.num_downsample_channels)
    boxes = tf.zeros([1, detections, 4])
    classes = tf.ones([1, detections], tf.int32)
    instance = tf.zeros([1, detections, crop, crop, channels])
    masks = tf.zeros([1, detections, crop, crop])
    head_calls = (
        ("backbone", network.backbone, lambda: network.backbone(tf.zeros(input_shape))),
        ("fpn", network.fpn, lambda: network.fpn(zeros(backbone_shapes))),
        ("head", network.head, lambda: network.head(zeros(fpn_shapes))),
        (
            "shape prior head",
            network.shape_prior_head,
            lambda: network.shape_prior_head(zeros(fpn_shapes), boxes, boxes, classes),
        ),
        (
            "coarse mask head",
            network.coarse_mask_head,
            lambda: network.coarse_mask_head(instance, masks, classes),
        ),
        (
            "fine mask head",
            network.fine_mask_head,
            lambda: network.fine_mask_head(instance, masks, classes),
        ),
    )
    # The zero inputs are graph constants: each trace holds exactly one part's operations.
    rows = [
        _row(name, layer, flops.count_macs(lambda unused, call=call: call(), (1,)))
        for name, layer, call in head_calls
    ]
    detector = RetinaNetDetector(params, [height, width])
    scale = float(params.architecture.outer_box_scale)

    def inference(images):
        outputs = network(images, training=False)
        info = tf.constant([[[height, width], [height, width], [1.0, 1.0], [0.0, 0.0]]])
        found = detector.detections(outputs, info)
        outer = box_ops.outer_boxes(found["detection_boxes"], scale, [height, width])
        return network.mask_outputs(
            outputs["fpn_features"], found["detection_boxes"], outer, found["detection_classes"]
        )

    rows.append(_row("total", network, flops.count_macs(inference, input_shape)))
    architecture = params.architecture
    head = params.retinanet_head
    mask = params.shapemask_head
    description = (
        f"ShapeMask: {_pyramid_description(params)}, RetinaNet head "
        f"{head.num_convs}x{head.num_filters} ({anchors_per_location(params)} anchors/location), "
        f"mask heads {mask.num_convs}x{mask.num_downsample_channels} at {crop}x{crop} "
        f"(fine x{mask.upsample_factor}), {network.shape_prior_head.num_clusters} shape "
        f"prior(s) per class, {architecture.num_classes} classes; mask heads on {detections} "
        "detections"
    )
    return ModelSummary(description=description, input_shape=input_shape, components=tuple(rows))


_SUMMARIES = {
    "retinanet": _retinanet_summary,
    "mask_rcnn": _maskrcnn_summary,
    "cascade_mask_rcnn": _maskrcnn_summary,
    "classification": _classification_summary,
    "segmentation": _segmentation_summary,
    "shapemask": _shapemask_summary,
}


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
