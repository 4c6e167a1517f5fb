"""EfficientNet backbone: published parameter counts, compound scaling, outputs."""

import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.backbones import efficientnet

# Published totals (official checkpoints as listed by torchvision's weights tables:
# efficientnet_b0 5,288,548, efficientnet_b7 66,347,960 params) minus the classification top
# of the paper's Table 1: the 1x1 head conv (320 * width -> 1280 * width, no bias), its
# batch norm (gamma, beta) and the 1000-way classifier.
PUBLISHED_WITHOUT_TOP = {
    "efficientnet-b0": 5_288_548 - (320 * 1280 + 2 * 1280) - (1280 * 1000 + 1000),
    "efficientnet-b7": 66_347_960 - (640 * 2560 + 2 * 2560) - (2560 * 1000 + 1000),
}

# Blocks per stage, ceil(depth * b0 repeats); the channels of levels 2-5
# (round_filters(24, 40, 112, 320) by width); the published resolution. By hand from the
# coefficient table.
STRUCTURE = {
    "efficientnet-b0": ((1, 2, 2, 3, 3, 4, 1), (24, 40, 112, 320), 224),
    "efficientnet-b1": ((2, 3, 3, 4, 4, 5, 2), (24, 40, 112, 320), 240),
    "efficientnet-b2": ((2, 3, 3, 4, 4, 5, 2), (24, 48, 120, 352), 260),
    "efficientnet-b3": ((2, 3, 3, 5, 5, 6, 2), (32, 48, 136, 384), 300),
    "efficientnet-b4": ((2, 4, 4, 6, 6, 8, 2), (32, 56, 160, 448), 380),
    "efficientnet-b5": ((3, 5, 5, 7, 7, 9, 3), (40, 64, 176, 512), 456),
    "efficientnet-b6": ((3, 6, 6, 8, 8, 11, 3), (40, 72, 200, 576), 528),
    "efficientnet-b7": ((4, 7, 7, 10, 10, 13, 4), (48, 80, 224, 640), 600),
}


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnet-b7"])
def test_full_size_feature_extractor_matches_published_params(name):
    model = efficientnet.EfficientNet(name)
    # Weight shapes do not depend on the input size: 32 px is the smallest with a level 5.
    out = model(tf.zeros([1, 32, 32, 3]), training=False)
    channels = STRUCTURE[name][1]
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        str(level): (1, 32 // 2**level, 32 // 2**level, c)
        for level, c in zip(range(2, 6), channels)
    }
    trainable = _count(model.trainable_weights)
    assert abs(trainable / PUBLISHED_WITHOUT_TOP[name] - 1) < 0.01
    # Stochastic depth is off at inference: a second call gives the same features.
    again = model(tf.zeros([1, 32, 32, 3]), training=False)
    for key in out:
        np.testing.assert_array_equal(out[key].numpy(), again[key].numpy())


@pytest.mark.parametrize("name", sorted(STRUCTURE))
def test_compound_scaling(name):
    model = efficientnet.EfficientNet(name)
    repeats, channels, resolution = STRUCTURE[name]
    assert [len(stage) for stage in model._stages] == list(repeats)
    assert model.output_channels == {str(lv): c for lv, c in zip(range(2, 6), channels)}
    # Stochastic depth: block i of n drops with rate 0.2 * i / n (the first never).
    n = sum(repeats)
    rates = [b._drop_connect.drop_rate for b in model.blocks]
    shortcut = [b.has_shortcut for b in model.blocks]
    expected = [0.2 * i / n if s and i else None for i, s in enumerate(shortcut)]
    assert rates == pytest.approx(expected)
    assert model.resolution == resolution


def test_rejects_unknown_name():
    with pytest.raises(ValueError, match="efficientnet-b8"):
        efficientnet.EfficientNet("efficientnet-b8")
