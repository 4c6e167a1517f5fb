"""SpineNet: wiring and per-block shapes of SpineNet-49 by hand, every model id, counts."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.backbones import scale_permuted, spinenet
from detection.modeling.heads import retinanet_head
from detection.modeling.layers import nearest_resize

# SpineNet-49 at 256 px, worked out by hand from the paper's block list: (level, channels)
# of the two stem outputs and of the 15 blocks (bottleneck blocks output 4x their width:
# 4 * 64 at level 2, 4 * 128 at level 3, 4 * 256 above; residual blocks 256).
SPINENET49_FEATURES = [
    (2, 256),
    (2, 256),
    (2, 256),  # block 0: bottleneck L2
    (4, 256),  # block 1: residual L4
    (3, 512),
    (4, 1024),
    (6, 256),
    (4, 1024),
    (5, 256),
    (7, 256),
    (5, 1024),
    (5, 1024),
    (4, 1024),  # block 10: output L4
    (3, 512),  # block 11: output L3
    (5, 1024),  # block 12: output L5
    (7, 1024),  # block 13: output L7
    (6, 1024),  # block 14: output L6
]

# Tracking by hand which features have been consumed: only output block 12 (level 5) finds
# an unconsumed feature of its level and width, block 9's output (feature 11).
SPINENET49_SHORTCUTS = {12: (11,)}


# A five-block scale-permuted network (one output per level) that still exercises every
# kind of connection: 2x and 4x down (stride-2 conv, + 3x3 max pool), 8x and 32x down
# (5x5 max pool), 2x up, both block types. Small enough for fast XLA compiles.
TINY_SPECS = scale_permuted.build_block_specs(
    [
        (3, "bottleneck", (0, 1), True),
        (5, "residual", (1, 2), True),
        (4, "bottleneck", (2, 3), True),
        (7, "residual", (0, 4), True),
        (6, "bottleneck", (3, 5), True),
    ]
)


def _tiny(**kwargs):
    return spinenet.SpineNet(
        "49S", filter_size_scale=0.125, endpoints_num_filters=8, block_specs=TINY_SPECS, **kwargs
    )


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.fixture(scope="module")
def spinenet49():
    # Full width; the weights build on the first call.
    return spinenet.SpineNet("49")


def test_spinenet49_wiring_by_hand():
    stem = [scale_permuted.Feature(2, 256, "bottleneck")] * 2

    def channels(spec):
        return spinenet.FILTER_SIZE_MAP[spec.level] * (4 if spec.block_fn == "bottleneck" else 1)

    nodes = scale_permuted.plan_wiring(spinenet.SPINENET_BLOCK_SPECS, stem, channels)
    assert [(n.output.level, n.output.channels) for n in nodes] == SPINENET49_FEATURES[2:]
    assert {i: n.shortcuts for i, n in enumerate(nodes) if n.shortcuts} == SPINENET49_SHORTCUTS
    assert [n.parents for n in nodes][:3] == [(0, 1), (0, 1), (2, 3)]


def test_spinenet49_block_shapes_at_256(spinenet49):
    features = spinenet49.block_features(tf.zeros([1, 256, 256, 3]), training=False)
    shapes = [tuple(f.shape) for f in features]
    expected = [(1, 256 // 2**level, 256 // 2**level, c) for level, c in SPINENET49_FEATURES]
    assert shapes == expected
    endpoints = spinenet49(tf.zeros([1, 256, 256, 3]), training=False)
    assert {k: tuple(v.shape) for k, v in endpoints.items()} == {
        str(level): (1, 256 // 2**level, 256 // 2**level, 256) for level in range(3, 8)
    }


def test_spinenet49_with_retinanet_head_matches_published_params(spinenet49):
    # MODEL_ZOO.md: RetinaNet SpineNet-49 640, 28.5 M params (trainable weights).
    if not spinenet49.built:  # the weights exist once an earlier test ran it
        spinenet49(tf.zeros([1, 128, 128, 3]), training=False)
    head = retinanet_head.RetinaNetHead(3, 7, num_classes=91, anchors_per_location=9)
    head({str(level): tf.zeros([1, 2, 2, 256]) for level in range(3, 8)}, training=False)
    total = _count(spinenet49.trainable_weights) + _count(head.trainable_weights)
    assert abs(total / 28.5e6 - 1) < 0.01


# Every distinct (block repeats, resample alpha) of the model ids at a forced tiny width, on
# the short spec to keep the test fast (the searched spec runs at full width above). At a
# forced width '49' builds the network of '49S' and '143' the one of '143L': those ids
# differ only in widths (next test).
@pytest.mark.parametrize("model_id", ["49S", "96", "143L", "190"])
def test_every_model_id_at_tiny_width(model_id):
    scaling = spinenet.scaling_for(model_id)
    model = spinenet.SpineNet(
        model_id, filter_size_scale=0.125, endpoints_num_filters=8, block_specs=TINY_SPECS
    )
    out = model(tf.random.normal([2, 128, 96, 3], seed=1), training=False)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        str(level): (2, math.ceil(128 / 2**level), math.ceil(96 / 2**level), 8)
        for level in range(3, 8)
    }
    assert all(np.isfinite(v.numpy()).all() for v in out.values())
    assert all(len(g.blocks) == scaling["block_repeats"] for g in model._stem_groups)
    assert all(len(g.blocks) == scaling["block_repeats"] for g in model._groups)
    # The first connection reduces stem block 1's output (4 x 8 channels) to alpha x 8.
    reduce = model._resamples[0][0]._reduce
    assert reduce.filters == int(8 * scaling["resample_alpha"])


def test_model_ids_follow_the_published_scaling():
    assert spinenet.scaling_for("143l") == spinenet.scaling_for("143L")
    widths = ("filter_size_scale", "endpoints_num_filters")
    for small, other in (("49S", "49"), ("143L", "143")):
        a, b = spinenet.scaling_for(small), spinenet.scaling_for(other)
        assert {k: v for k, v in a.items() if k not in widths} == {
            k: v for k, v in b.items() if k not in widths
        }
    assert spinenet.scaling_for("190") == dict(
        endpoints_num_filters=512, filter_size_scale=1.3, resample_alpha=1.0, block_repeats=4
    )
    with pytest.raises(ValueError, match="spinenet.model_id"):
        spinenet.SpineNet("50")
    with pytest.raises(ValueError, match="min_level/max_level"):
        spinenet.SpineNet("49", min_level=3, max_level=6)
    with pytest.raises(ValueError, match="init_drop_connect_rate"):
        spinenet.SpineNet("49", init_drop_connect_rate=1.5)
    for key, value in (
        ("filter_size_scale", -0.5),
        ("resample_alpha", 0.0),
        ("block_repeats", 2.5),
        ("block_repeats", 0),
    ):
        with pytest.raises(ValueError, match=f"spinenet.{key}: .*got {value}"):
            spinenet.SpineNet("49S", **{key: value})


def test_resolve_scaling_applies_only_the_given_overrides():
    table = {"A1": dict(filter_size_scale=1.0, resample_alpha=0.5, block_repeats=1)}
    resolved = scale_permuted.resolve_scaling(
        "fam", table, "a1", dict(filter_size_scale=0.25, resample_alpha=None)
    )
    assert resolved == dict(filter_size_scale=0.25, resample_alpha=0.5, block_repeats=1)
    assert table["A1"]["filter_size_scale"] == 1.0  # the table itself is left alone
    with pytest.raises(ValueError, match="fam.model_id: unsupported value 'B'"):
        scale_permuted.resolve_scaling("fam", table, "B", {})
    with pytest.raises(ValueError, match="fam: 'se_ratio' is not one of the scaling keys"):
        scale_permuted.resolve_scaling("fam", table, "A1", dict(se_ratio=0.2))


def test_stochastic_depth_grows_with_block_index_and_is_off_at_inference():
    tf.keras.utils.set_random_seed(0)
    model = _tiny(init_drop_connect_rate=0.3)
    rates = [g.blocks[0]._drop_connect.drop_rate for g in model._groups]
    np.testing.assert_allclose(rates, [0.3 * (i + 1) / 5 for i in range(5)])
    assert all(g.blocks[0]._drop_connect.drop_rate is None for g in model._stem_groups)
    images = tf.random.normal([4, 128, 128, 3], seed=2)
    first = model(images, training=False)
    second = model(images, training=False)
    for key in first:
        np.testing.assert_array_equal(first[key].numpy(), second[key].numpy())
    # In training, whole residual branches of some examples are dropped: the outputs vary
    # between calls (batch statistics alone would give the same result twice).
    third = model(images, training=True)
    fourth = model(images, training=True)
    assert not all(np.array_equal(third[k].numpy(), fourth[k].numpy()) for k in third)


def test_native_and_repeat_upsampling_agree():
    x = tf.random.normal([2, 3, 5, 4], seed=3)
    repeat = nearest_resize.resize_nearest(x, (12, 20))
    native = nearest_resize.resize_nearest(x, (12, 20), use_native_resize_op=True)
    np.testing.assert_array_equal(repeat.numpy(), native.numpy())
    np.testing.assert_array_equal(repeat.numpy(), x.numpy().repeat(4, axis=1).repeat(4, axis=2))
    # Other size changes gather the pixels tf.image.resize picks.
    for size in ((4, 7), (2, 3), (7, 13), (1, 1)):
        np.testing.assert_array_equal(
            nearest_resize.resize_nearest(x, size).numpy(),
            tf.image.resize(x, size, method="nearest").numpy(),
        )


# Levels 3-4 only, three blocks: 4x down (stride-2 conv + max pool), 2x down, 2x up,
# same-level, both block types. XLA compiles of the full searched spec take ~20 CPU s.
XLA_SPECS = scale_permuted.build_block_specs(
    [
        (4, "residual", (0, 1), False),
        (3, "bottleneck", (1, 2), True),
        (4, "bottleneck", (2, 3), True),
    ]
)


def test_tiny_spinenet_compiles_with_xla_forward_and_gradient():
    model = spinenet.SpineNet(
        "49S",
        min_level=3,
        max_level=4,
        filter_size_scale=0.125,
        endpoints_num_filters=8,
        init_drop_connect_rate=0.2,
        block_specs=XLA_SPECS,
    )
    # 40 px: level 4 is 3x3 and level 3 is 5x5, so the 2x upsampling is the gather path,
    # the one that is not a plain repeat.
    images = tf.random.normal([2, 40, 40, 3], seed=5)
    model(images, training=False)

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = tf.add_n([tf.reduce_mean(tf.square(v)) for v in out.values()])
        return out, loss, tape.gradient(loss, model.trainable_variables)

    out, loss, grads = step(images)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"3": (2, 5, 5, 8), "4": (2, 3, 3, 8)}
    assert np.isfinite(loss.numpy())
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
