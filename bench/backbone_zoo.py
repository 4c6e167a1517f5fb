"""Parameters and MACs of the original model zoo's RetinaNet rows, ours vs published.

For each RetinaNet row of the original framework's MODEL_ZOO.md (SpineNet-49S/49/96/143/190,
SpineNet-MBConv-49, R50-NAS-FPN) builds backbone (+ NAS-FPN) + RetinaNet head (91 classes,
9 anchors, the head width of the row's config), counts the weights (all, and trainable:
without the batch-norm moving statistics) and the multiply-accumulates of one forward pass
at the row's input size with `detection.modeling.flops.count_macs` (the zoo's "FLOPs" are
multiply-adds). Weights are built on a small input (their shapes do not depend on it); the
MACs come from a traced graph at the published size, nothing runs at full size.

Nothing is trained or asserted (`tests/` asserts the fast cases); prints a markdown table.

Usage (from the repository root):
  .venv/bin/python bench/backbone_zoo.py [--rows=spinenet49,r50_nasfpn]
"""

import dataclasses
import math
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from detection.modeling import flops
from detection.modeling.backbones import resnet, spinenet, spinenet_mbconv
from detection.modeling.decoders import nasfpn
from detection.modeling.heads import retinanet_head
from detection.modeling.layers import norm_activation as norm_lib

FLAGS = flags.FLAGS
flags.DEFINE_list("rows", None, "Row names to measure (default: all).")


@dataclasses.dataclass(frozen=True)
class Row:
    """One zoo row: how to build it and its published figures (M params, B multiply-adds)."""

    name: str
    input_size: int
    published_params_m: float
    published_gflops: float
    build_backbone: object
    build_decoder: object = None
    head_filters: int = 256
    head_convs: int = 4
    head_separable: bool = False


SWISH = norm_lib.NormActivationConfig(activation="swish")

# MODEL_ZOO.md of tensorflow/tpu models/official/detection; head widths from the row's
# config (spinenet49S_retinanet.yaml: 128 filters; spinenet190_retinanet.yaml: 7 x 512;
# spinenet49_mbconv_retinanet.yaml: 48 filters, separable convs).
ROWS = (
    Row("spinenet49s", 640, 11.9, 33.8, lambda: spinenet.SpineNet("49S"), head_filters=128),
    Row(
        "spinenet49s_endpoints256",
        640,
        11.9,
        33.8,
        lambda: spinenet.SpineNet("49S", endpoints_num_filters=256),
        head_filters=128,
    ),
    Row("spinenet49", 640, 28.5, 85.4, lambda: spinenet.SpineNet("49")),
    Row("spinenet96", 1024, 43.0, 265.4, lambda: spinenet.SpineNet("96")),
    Row("spinenet143", 1280, 67.0, 524.0, lambda: spinenet.SpineNet("143")),
    Row(
        "spinenet190",
        1280,
        163.6,
        1885.0,
        lambda: spinenet.SpineNet("190"),
        head_filters=512,
        head_convs=7,
    ),
    Row(
        "spinenet_mbconv49",
        384,
        2.34,
        1.0,
        lambda: spinenet_mbconv.SpineNetMBConv("49", norm_activation=SWISH),
        head_filters=48,
        head_separable=True,
    ),
    # The zoo row is NAS-FPN 7@256 (the paper's model); retinanet_nasfpn.yaml trains 5 cells.
    Row(
        "r50_nasfpn",
        640,
        60.3,
        140.6,
        lambda: resnet.ResNet(50),
        lambda: nasfpn.NasFpn(num_repeats=7),
    ),
    Row(
        "r50_nasfpn_5cells",
        640,
        60.3,
        140.6,
        lambda: resnet.ResNet(50),
        lambda: nasfpn.NasFpn(num_repeats=5),
    ),
)


def _count(weights):
    return sum(math.prod(int(d) for d in w.shape) for w in weights)


def measure(row):
    """Returns {component: (params, trainable, macs)} for the row, plus 'total'."""
    backbone = row.build_backbone()
    decoder = row.build_decoder() if row.build_decoder else None
    head = retinanet_head.RetinaNetHead(
        3,
        7,
        num_classes=91,
        anchors_per_location=9,
        num_convs=row.head_convs,
        num_filters=row.head_filters,
        use_separable_conv=row.head_separable,
    )

    def forward(images):
        features = backbone(images, training=False)
        if decoder is not None:
            features = decoder(features, training=False)
        return features

    forward(tf.zeros([1, 128, 128, 3]))
    head(forward(tf.zeros([1, 128, 128, 3])), training=False)

    shape = (1, row.input_size, row.input_size, 3)
    spec = tf.TensorSpec(shape, tf.float32)
    backbone_out = tf.function(lambda x: backbone(x, training=False)).get_concrete_function(spec)
    backbone_shapes = {k: tuple(v.shape) for k, v in backbone_out.structured_outputs.items()}
    pyramid_shapes = {
        k: tuple(v.shape)
        for k, v in tf.function(forward).get_concrete_function(spec).structured_outputs.items()
    }

    def from_zeros(layer, shapes):
        return lambda unused: layer({k: tf.zeros(s) for k, s in shapes.items()}, training=False)

    rows = {"backbone": (backbone, flops.count_macs(lambda x: backbone(x, training=False), shape))}
    if decoder is not None:
        rows["decoder"] = (decoder, flops.count_macs(from_zeros(decoder, backbone_shapes), (1,)))
    rows["head"] = (head, flops.count_macs(from_zeros(head, pyramid_shapes), (1,)))
    result = {
        name: (_count(layer.weights), _count(layer.trainable_weights), macs)
        for name, (layer, macs) in rows.items()
    }
    result["total"] = tuple(int(np.sum([v[i] for v in result.values()])) for i in range(3))
    return result


def main(argv):
    del argv
    rows = [r for r in ROWS if FLAGS.rows is None or r.name in FLAGS.rows]
    lines = [
        "| row | input | component | params (M) | trainable (M) | GMACs |",
        "|---|---:|---|---:|---:|---:|",
    ]
    summary = [
        "| row | published params (M) | ours trainable (M) | diff | published FLOPs (B) "
        "| ours GMACs | diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        start = time.time()
        result = measure(row)
        for component, (params, trainable, macs) in result.items():
            lines.append(
                f"| {row.name} | {row.input_size} | {component} | {params / 1e6:.3f} | "
                f"{trainable / 1e6:.3f} | {macs / 1e9:.2f} |"
            )
        params, trainable, macs = result["total"]
        summary.append(
            f"| {row.name} @{row.input_size} | {row.published_params_m} | {trainable / 1e6:.3f} | "
            f"{100 * (trainable / 1e6 / row.published_params_m - 1):+.2f}% | "
            f"{row.published_gflops} | {macs / 1e9:.2f} | "
            f"{100 * (macs / 1e9 / row.published_gflops - 1):+.2f}% |"
        )
        print(f"{row.name}: {time.time() - start:.0f} s", flush=True)
    print("\n".join(lines))
    print()
    print("\n".join(summary))


if __name__ == "__main__":
    app.run(main)
