"""NAS-FPN: the cell's wiring by hand, a NumPy re-computation of one cell, options, XLA."""

import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.decoders import nasfpn
from detection.modeling.decoders import nasfpn_cell

# The searched cell over inputs 0..4 (levels 3..7), worked out by hand: (level, combine,
# parents, extras). Output nodes add the inputs nobody consumed at their level: the level-5
# node adds input 2 (P5), the level-7 node adds input 4 (P7).
CELL_BY_HAND = [
    (4, "attention", (1, 3), ()),
    (4, "sum", (1, 5), ()),
    (3, "sum", (0, 6), ()),
    (4, "sum", (6, 7), ()),
    (5, "attention", (7, 8), (2,)),
    (7, "attention", (6, 9), (4,)),
    (6, "attention", (9, 10), ()),
]


def conv_same_np(x, kernel, bias):
    k = kernel.shape[0]
    pad = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            out[:, i, j] = np.tensordot(
                xp[:, i : i + k, j : j + k], kernel, axes=([1, 2, 3], [0, 1, 2])
            )
    return out + bias


def bn_np(x, norm):
    bn = norm._bn
    y = (x - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    return y * bn.gamma.numpy() + bn.beta.numpy()


def max_pool_np(x, stride):
    """TF 'SAME' max pool with window = stride: pad with -inf to ceil(h / stride) windows."""
    b, h, w, c = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h, pad_w = out_h * stride - h, out_w * stride - w
    x = np.pad(
        x,
        ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)),
        constant_values=-np.inf,
    )
    return x.reshape(b, out_h, stride, out_w, stride, c).max(axis=(2, 4))


def resample_np(x, layer, level, target_level, side=None):
    if layer._conv is not None:
        x = bn_np(
            conv_same_np(x, layer._conv.kernel.numpy(), layer._conv.bias.numpy()), layer._norm
        )
    if target_level > level:
        x = max_pool_np(x, 2 ** (target_level - level))
    elif target_level < level:
        s = 2 ** (level - target_level)
        x = x.repeat(s, axis=1).repeat(s, axis=2)[:, :side, :side]
    return x


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def nasfpn_one_cell_np(features, layer):
    feats, levels = [], []
    for level in range(3, 8):
        if str(level) in features:
            feats.append(resample_np(features[str(level)], layer._inputs[level], level, level))
        else:
            feats.append(resample_np(feats[-1], layer._inputs[level], level - 1, level))
        levels.append(level)
    sides = {level: x.shape[1] for level, x in zip(levels, feats)}
    for (level, combine, parents, extras), node in zip(CELL_BY_HAND, layer._cells[0]):
        inputs = [
            resample_np(feats[j], r, levels[j], level, sides[level])
            for j, r in zip(parents + extras, node._resamples)
        ]
        a, b = inputs[0], inputs[1]
        if combine == "sum":
            x = a + b
        else:
            coarse, fine = (a, b) if levels[parents[0]] >= levels[parents[1]] else (b, a)
            x = coarse + fine * sigmoid(coarse.max(axis=(1, 2), keepdims=True))
        for extra in inputs[2:]:
            x = x + extra
        conv, norm = node._block
        x = bn_np(conv_same_np(np.maximum(x, 0), conv.kernel.numpy(), conv.bias.numpy()), norm)
        feats.append(x)
        levels.append(level)
    return {str(level): x for level, x in zip(levels[-5:], feats[-5:])}


def backbone_features(size=128, channels=(4, 6, 8, 10), seed=0):
    rng = np.random.default_rng(seed)
    return {
        str(level): rng.normal(size=(2, size // 2**level, size // 2**level, c)).astype(np.float32)
        for level, c in zip(range(2, 6), channels)
    }


def randomize(layer, seed):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, size=w.shape).astype(np.float32))
        else:
            w.assign(rng.normal(0.0, 0.3, size=w.shape).astype(np.float32))


def test_cell_wiring_by_hand():
    levels, wiring = nasfpn_cell.plan_cell(nasfpn_cell.NASFPN_BLOCK_SPECS, [3, 4, 5, 6, 7])
    assert levels == [3, 4, 5, 6, 7] + [row[0] for row in CELL_BY_HAND]
    assert wiring == [(parents, extras) for _, _, parents, extras in CELL_BY_HAND]
    assert [s.combine_fn for s in nasfpn_cell.NASFPN_BLOCK_SPECS] == [r[1] for r in CELL_BY_HAND]


@pytest.mark.parametrize("size", [128, 64])
def test_one_cell_matches_numpy(size):
    # At 64 px, P6 and P7 are both 1x1 (max pools of the 2x2 P5 with SAME padding), so
    # upsampling P7 to P6 must not double it.
    feats = backbone_features(size)
    layer = nasfpn.NasFpn(fpn_feat_dims=8, num_repeats=1)
    layer(feats, training=False)
    randomize(layer, 1)
    out = layer(feats, training=False)
    # Level 4 already has 8 channels: no 1x1 conv there; P6/P7 are max pools only.
    assert layer._inputs[4]._conv is None and layer._inputs[3]._conv is not None
    assert layer._inputs[6]._conv is None and layer._inputs[7]._conv is None
    expected = nasfpn_one_cell_np(feats, layer)
    assert sorted(out, key=int) == ["3", "4", "5", "6", "7"]
    for key in expected:
        side = max(size // 2 ** int(key), 1)
        assert out[key].shape == (2, side, side, 8)
        np.testing.assert_allclose(out[key].numpy(), expected[key], rtol=1e-4, atol=1e-4)


def test_sum_for_combination_changes_only_the_merges():
    feats = backbone_features(seed=2)
    attention = nasfpn.NasFpn(fpn_feat_dims=8, num_repeats=1)
    summed = nasfpn.NasFpn(fpn_feat_dims=8, num_repeats=1, use_sum_for_combination=True)
    attention(feats)
    summed(feats)
    assert len(attention.weights) == len(summed.weights)
    randomize(attention, 3)
    summed.set_weights(attention.get_weights())
    a, s = attention(feats), summed(feats)
    # Node 2 (level 3) is a sum in the searched cell but reads attention node 1's output.
    assert not np.allclose(a["3"].numpy(), s["3"].numpy())


@pytest.mark.parametrize("block_fn, channels", [("conv", 8), ("bottleneck", 32)])
def test_block_fns_and_output_channels(block_fn, channels):
    layer = nasfpn.NasFpn(
        fpn_feat_dims=8,
        num_repeats=1,
        block_fn=block_fn,
        activation="swish",
        init_drop_connect_rate=0.2,
        use_separable_conv=block_fn == "conv",
    )
    out = layer(backbone_features(seed=4), training=False)
    assert layer.output_channels == {str(level): channels for level in range(3, 8)}
    for level in range(3, 8):
        side = max(128 // 2**level, 1)
        assert out[str(level)].shape == (2, side, side, channels)
    if block_fn == "bottleneck":
        assert layer._cells[0][0]._block[0]._drop_connect.drop_rate == 0.2


def test_repeated_cells_resample_wide_bottleneck_outputs():
    layer = nasfpn.NasFpn(fpn_feat_dims=8, num_repeats=3, block_fn="bottleneck")
    layer.build({k: v.shape for k, v in backbone_features().items()})
    assert len(layer._cells) == 3
    # First cell: inputs already 8 wide. Later cells read 4 * 8 wide bottleneck outputs and
    # map them back to 8 before merging; the nodes' own outputs always need it.
    assert layer._cells[0][0]._resamples[0]._conv is None
    assert all(cell[0]._resamples[0]._conv is not None for cell in layer._cells[1:])
    assert all(cell[1]._resamples[1]._conv is not None for cell in layer._cells)


def test_rejects_bad_values():
    with pytest.raises(ValueError, match="levels 3-7"):
        nasfpn.NasFpn(min_level=2, max_level=6)
    with pytest.raises(ValueError, match="nasfpn.block_fn"):
        nasfpn.NasFpn(block_fn="residual")
    with pytest.raises(ValueError, match="activation"):
        nasfpn.NasFpn(activation="gelu")
    with pytest.raises(ValueError, match="nasfpn.num_repeats"):
        nasfpn.NasFpn(num_repeats=0)
    with pytest.raises(ValueError, match="level 3"):
        nasfpn.NasFpn()({"4": tf.zeros([1, 8, 8, 4]), "5": tf.zeros([1, 4, 4, 4])})


def test_tiny_nasfpn_compiles_with_xla_forward_and_gradient():
    layer = nasfpn.NasFpn(fpn_feat_dims=8, num_repeats=1)
    feats = {k: tf.constant(v) for k, v in backbone_features(seed=5).items()}
    layer(feats, training=False)

    @tf.function(jit_compile=True)
    def step(features):
        with tf.GradientTape() as tape:
            out = layer(features, training=True)
            loss = tf.add_n([tf.reduce_mean(tf.square(v)) for v in out.values()])
        return loss, tape.gradient(loss, layer.trainable_variables)

    loss, grads = step(feats)
    assert np.isfinite(loss.numpy())
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
