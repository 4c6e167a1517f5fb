"""ResNet backbone and its layers: norm+activation, DropBlock, drop connect."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.backbones import resnet
from detection.modeling.layers import dropblock, norm_activation, resnet_blocks, stochastic_depth
from detection.modeling.layers.batch_norm import FusedBatchNorm

# torchvision's published num_params minus its 1000-way fc layer
# (2048*1000+1000 for bottleneck nets, 512*1000+1000 for basic ones). The
# original framework also gives the first basic block of C2 a 1x1 projection
# (64 -> 64 channels, + batch norm) where torchvision has an identity.
PUBLISHED_TRAINABLE = {
    18: 11_689_512 - 513_000 + (64 * 64 + 2 * 64),
    50: 25_557_032 - 2_049_000,
}


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _analytic_trainable_params(depth):
    """Conv kernels + BN gamma/beta, counted from the architecture table."""
    block, repeats = {
        10: ("basic", (1, 1, 1, 1)),
        14: ("bottleneck", (1, 1, 1, 1)),
        18: ("basic", (2, 2, 2, 2)),
        26: ("bottleneck", (2, 2, 2, 2)),
        34: ("basic", (3, 4, 6, 3)),
        50: ("bottleneck", (3, 4, 6, 3)),
        101: ("bottleneck", (3, 4, 23, 3)),
        152: ("bottleneck", (3, 8, 36, 3)),
        200: ("bottleneck", (3, 24, 36, 3)),
    }[depth]

    def conv_bn(k, cin, cout):
        return k * k * cin * cout + 2 * cout

    total = conv_bn(7, 3, 64)
    cin = 64
    for filters, n in zip((64, 128, 256, 512), repeats):
        cout = filters * (4 if block == "bottleneck" else 1)
        for i in range(n):
            if i == 0:
                total += conv_bn(1, cin, cout)
            if block == "bottleneck":
                total += (
                    conv_bn(1, cin, filters)
                    + conv_bn(3, filters, filters)
                    + conv_bn(1, filters, cout)
                )
            else:
                total += conv_bn(3, cin, cout) + conv_bn(3, cout, cout)
            cin = cout
    return total


# Building the 100+ layer nets takes 5-15 s each on 2 cores; their shapes
# follow from the same code path as ResNet-50, so they are checked for
# structure only (see test_deep_nets_have_the_published_block_counts).
BUILT_DEPTHS = (10, 14, 18, 26, 34, 50)


@pytest.mark.parametrize("depth", BUILT_DEPTHS)
def test_output_shapes_and_parameter_count(depth):
    model = resnet.ResNet(depth)
    images = tf.random.normal([2, 64, 96, 3], seed=depth)
    features = model(images, training=False)
    expansion = 4 if resnet.RESNET_SPECS[depth][0] == "bottleneck" else 1
    assert sorted(features) == ["2", "3", "4", "5"]
    for level, filters in zip(range(2, 6), (64, 128, 256, 512)):
        stride = 2**level
        assert features[str(level)].shape == (2, 64 // stride, 96 // stride, filters * expansion)
        assert model.output_channels[str(level)] == filters * expansion
    assert _count(model.trainable_weights) == _analytic_trainable_params(depth)
    if depth in PUBLISHED_TRAINABLE:
        assert _count(model.trainable_weights) == PUBLISHED_TRAINABLE[depth]


@pytest.mark.parametrize(
    "depth,repeats", [(101, (3, 4, 23, 3)), (152, (3, 8, 36, 3)), (200, (3, 24, 36, 3))]
)
def test_deep_nets_have_the_published_block_counts(depth, repeats):
    model = resnet.ResNet(depth)
    assert tuple(len(group) for group in model._groups) == repeats
    assert all(
        isinstance(block, resnet_blocks.BottleneckBlock)
        for group in model._groups
        for block in group
    )
    assert model.output_channels == {"2": 256, "3": 512, "4": 1024, "5": 2048}
    assert [block._projection is not None for block in model._groups[2]] == (
        [True] + [False] * (repeats[2] - 1)
    )


def test_analytic_count_matches_published_deep_resnets():
    # torchvision num_params minus fc, for the depths not built above.
    assert _analytic_trainable_params(101) == 44_549_160 - 2_049_000
    assert _analytic_trainable_params(152) == 60_192_808 - 2_049_000


def test_odd_input_sizes_round_up():
    features = resnet.ResNet(10)(tf.zeros([1, 65, 63, 3]))
    assert features["2"].shape[1:3] == (17, 16)
    assert features["5"].shape[1:3] == (3, 2)


def test_bottleneck_strides_on_the_3x3_conv():
    model = resnet.ResNet(14)
    model(tf.zeros([1, 64, 64, 3]))
    first = model._groups[1][0]  # C3 group, first block: stride 2.
    kernels = [conv._conv.kernel.shape for conv in first._convs]
    strides = [conv._conv.strides for conv in first._convs]
    assert kernels == [(1, 1, 256, 128), (3, 3, 128, 128), (1, 1, 128, 512)]
    assert strides == [(1, 1), (2, 2), (1, 1)]
    assert first._projection._conv.strides == (2, 2)


def test_rejects_unknown_depth():
    with pytest.raises(ValueError, match="resnet_depth.*77"):
        resnet.ResNet(77)


def test_batch_norm_options_reach_every_batch_norm():
    config = norm_activation.NormActivationConfig(momentum=0.9, epsilon=1e-3, trainable=False)
    model = resnet.ResNet(10, norm_activation=config)
    images = tf.random.normal([2, 64, 64, 3], seed=1)
    inference = model(images, training=False)
    norms = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, (FusedBatchNorm, keras.layers.BatchNormalization))
    ]
    assert len(norms) == 1 + 4 * 2 + 4  # stem, 2 per block, 4 projections.
    assert all(n.momentum == 0.9 and n.epsilon == 1e-3 for n in norms)
    assert all(not n.trainable_weights for n in norms)
    assert _count(model.non_trainable_weights) == sum(4 * n.gamma.shape[0] for n in norms)
    # A frozen batch norm uses its moving statistics even in training.
    training = model(images, training=True)
    np.testing.assert_allclose(training["5"], inference["5"], rtol=1e-5, atol=1e-5)


def test_trainable_batch_norm_uses_batch_statistics_in_training():
    model = resnet.ResNet(10)
    images = tf.random.normal([2, 64, 64, 3], seed=2)
    inference = model(images, training=False)["5"]
    training = model(images, training=True)["5"]
    assert not np.allclose(inference, training, atol=1e-3)


def test_swish_activation_lets_outputs_go_negative():
    images = tf.random.normal([2, 64, 64, 3], seed=3)
    relu = resnet.ResNet(10)(images, training=True)
    swish = resnet.ResNet(
        10, norm_activation=norm_activation.NormActivationConfig(activation="swish")
    )(images, training=True)
    assert float(tf.reduce_min(relu["3"])) >= 0.0
    assert float(tf.reduce_min(swish["3"])) < 0.0


def test_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation.*'gelu'"):
        norm_activation.NormActivationConfig(activation="gelu")


def test_drop_connect_rate_grows_with_group_index():
    model = resnet.ResNet(18, init_drop_connect_rate=0.2)
    for group_index, blocks in enumerate(model._groups):
        for block in blocks:
            assert block._drop_connect.drop_rate == pytest.approx(0.2 * (group_index + 2) / 5)
    assert stochastic_depth.get_drop_connect_rate(None, 3, 5) is None


def test_dropblock_and_drop_connect_only_act_in_training():
    images = tf.random.normal([2, 64, 64, 3], seed=4)
    plain = resnet.ResNet(10)
    regularized = resnet.ResNet(
        10, init_drop_connect_rate=0.5, dropblock_keep_prob=0.7, dropblock_size=3
    )
    plain(images)
    regularized(images)
    regularized.set_weights(plain.get_weights())
    np.testing.assert_allclose(
        regularized(images, training=False)["5"],
        plain(images, training=False)["5"],
        rtol=1e-5,
        atol=1e-5,
    )
    # In training (here XLA-compiled) the masks differ from call to call.
    step = tf.function(lambda x: regularized(x, training=True)["5"], jit_compile=True)
    first, second = step(images), step(images)
    assert not np.allclose(first, second, atol=1e-3)
    assert not np.allclose(first, plain(images, training=True)["5"], atol=1e-3)


def test_dropblock_identity_outside_training_or_without_keep_prob():
    x = tf.random.normal([2, 16, 16, 4], seed=5)
    np.testing.assert_array_equal(dropblock.DropBlock(0.5, 3)(x), x)
    np.testing.assert_array_equal(dropblock.DropBlock(None, None)(x, training=True), x)


def test_dropblock_drops_whole_blocks_and_rescales():
    block = 3
    x = tf.ones([4, 24, 24, 3])
    layer = dropblock.DropBlock(keep_prob=0.8, block_size=block, seed=7)
    out = layer(x, training=True).numpy()
    dropped = out == 0.0
    kept = ~dropped
    assert dropped.any() and kept.any()
    # Survivors are scaled so that the total is preserved.
    np.testing.assert_allclose(out[kept], out.size / kept.sum(), rtol=1e-5)
    # Every dropped pixel lies inside a fully dropped block x block square.
    n, h, w, c = out.shape
    covered = np.zeros_like(dropped)
    for i in range(h - block + 1):
        for j in range(w - block + 1):
            square = dropped[:, i : i + block, j : j + block, :].all(axis=(1, 2))
            covered[:, i : i + block, j : j + block, :] |= square[:, None, None]
    np.testing.assert_array_equal(covered, dropped)


def test_dropblock_keeps_about_keep_prob():
    x = tf.ones([8, 32, 32, 16])
    out = dropblock.DropBlock(0.9, 5, seed=3)(x, training=True).numpy()
    assert abs((out != 0).mean() - 0.9) < 0.03


def test_dropblock_validates_arguments():
    with pytest.raises(ValueError, match="dropblock_keep_prob"):
        dropblock.DropBlock(1.5, 3)
    with pytest.raises(ValueError, match="dropblock_size"):
        dropblock.DropBlock(0.9, None)


def test_stochastic_depth_drops_whole_examples():
    x = tf.ones([64, 4, 4, 2])
    out = stochastic_depth.StochasticDepth(0.25, seed=1)(x, training=True).numpy()
    per_example = out.reshape(64, -1)
    for row in per_example:
        assert np.all(row == 0.0) or np.allclose(row, 1.0 / 0.75)
    assert 0 < (per_example[:, 0] == 0).sum() < 64
    np.testing.assert_array_equal(stochastic_depth.StochasticDepth(0.25)(x, training=False), x)
