"""SpineNet-MBConv: wiring by hand, every model id, the published RetinaNet parameter count."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.backbones import scale_permuted, spinenet_mbconv
from detection.modeling.heads import retinanet_head
from detection.modeling.layers import norm_activation

# (level, channels) of the stem outputs and the 16 blocks of SpineNet-MBConv-49, by hand
# from the block list and the widths 16/24/40/80/112 of levels 1-5 (112 above).
MBCONV49_FEATURES = [
    (1, 16),
    (2, 24),
    (2, 24),
    (2, 24),
    (4, 80),
    (3, 40),
    (4, 80),
    (6, 112),
    (4, 80),
    (5, 112),
    (7, 112),
    (5, 112),
    (5, 112),
    (4, 80),  # block 11: output L4
    (3, 40),  # block 12: output L3
    (5, 112),  # block 13: output L5, adds block 10's unconsumed output (feature 12)
    (7, 112),
    (6, 112),
]


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


SWISH = norm_activation.NormActivationConfig(activation="swish")


@pytest.fixture(scope="module")
def mbconv49():
    return spinenet_mbconv.SpineNetMBConv("49", norm_activation=SWISH, init_drop_connect_rate=0.2)


def test_wiring_by_hand():
    stem = [scale_permuted.Feature(1, 16, "mbconv"), scale_permuted.Feature(2, 24, "mbconv")]
    nodes = scale_permuted.plan_wiring(
        spinenet_mbconv.SPINENET_MBCONV_BLOCK_SPECS,
        stem,
        lambda spec: spinenet_mbconv.FILTER_SIZE_MAP[spec.level],
    )
    assert [(n.output.level, n.output.channels) for n in nodes] == MBCONV49_FEATURES[2:]
    assert {i: n.shortcuts for i, n in enumerate(nodes) if n.shortcuts} == {13: (12,)}


@pytest.mark.parametrize(
    "model_id, widths, endpoints",
    [
        # round_filters(FILTER_SIZE_MAP[level], scale) for levels 1-5, by hand.
        ("49", (16, 24, 40, 80, 112), 48),
        ("49S", (16, 16, 24, 56, 72), 40),
        ("49XS", (16, 16, 24, 48, 64), 24),
    ],
)
def test_every_model_id(model_id, widths, endpoints, mbconv49):
    if model_id == "49":
        model = mbconv49
    else:
        model = spinenet_mbconv.SpineNetMBConv(model_id, init_drop_connect_rate=0.2)
    images = tf.random.normal([2, 64, 96, 3], seed=1)
    features = model.block_features(images, training=False)
    levels = [level for level, _ in MBCONV49_FEATURES]
    by_level = dict(zip(range(1, 6), widths))
    expected = [
        (2, math.ceil(64 / 2**lv), math.ceil(96 / 2**lv), by_level[min(lv, 5)]) for lv in levels
    ]
    assert [tuple(f.shape) for f in features] == expected
    out = model(images, training=False)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        str(lv): (2, math.ceil(64 / 2**lv), math.ceil(96 / 2**lv), endpoints) for lv in range(3, 8)
    }
    rates = [g.blocks[0]._drop_connect.drop_rate for g in model._groups]
    np.testing.assert_allclose(rates, [0.2 * (i + 1) / 16 for i in range(16)])


def test_mbconv49_retinanet_matches_published_params(mbconv49):
    # MODEL_ZOO.md: SpineNetMB-49 RetinaNet at 384, 2.34 M params (trainable weights); head
    # of spinenet49_mbconv_retinanet.yaml: 4 separable convs of 48 filters.
    head = retinanet_head.RetinaNetHead(
        3, 7, num_classes=91, anchors_per_location=9, num_filters=48, use_separable_conv=True
    )
    if not mbconv49.built:  # the weights exist once an earlier test ran it
        mbconv49(tf.zeros([1, 128, 128, 3]), training=False)
    head({str(level): tf.zeros([1, 2, 2, 48]) for level in range(3, 8)}, training=False)
    total = _count(mbconv49.trainable_weights) + _count(head.trainable_weights)
    assert abs(total / 2.34e6 - 1) < 0.01


def test_rejects_bad_values():
    with pytest.raises(ValueError, match="spinenet_mbconv.model_id"):
        spinenet_mbconv.SpineNetMBConv("96")
    with pytest.raises(ValueError, match="se_ratio"):
        spinenet_mbconv.SpineNetMBConv("49", se_ratio=2.0)
    # The scaling overrides are checked by the shared resolver, named after this section.
    for key, value in (("filter_size_scale", 0.0), ("block_repeats", 1.5), ("block_repeats", 0)):
        with pytest.raises(ValueError, match=f"spinenet_mbconv.{key}: .*got {value}"):
            spinenet_mbconv.SpineNetMBConv("49S", **{key: value})
