"""Backbone and decoder registries: every params key reaches its constructor, and parts that
cannot fit together are rejected with a ParamsError before any weight exists."""

import math

import pytest

from detection.configs import loader
from detection.hyperparameters import ParamsError
from detection.modeling.backbones import factory as backbone_factory
from detection.modeling.backbones.efficientnet import B0_STAGES, EFFICIENTNET_PARAMS, EfficientNet
from detection.modeling.backbones.spinenet import SpineNet
from detection.modeling.backbones.spinenet_mbconv import SpineNetMBConv
from detection.modeling.decoders import factory as decoder_factory
from detection.modeling.decoders.nasfpn import NasFpn
from detection.modeling.layers import mbconv
from detection.modeling.networks import factory as network_factory


def _params(**sections):
    return loader.load_params("retinanet", params_override=sections)


def _norm_config(layer):
    return {k: layer.get_config()[k] for k in ("momentum", "epsilon", "activation", "trainable")}


def test_every_original_backbone_name_is_registered():
    assert set(backbone_factory.BACKBONES) == {
        "resnet",
        "spinenet",
        "spinenet_mbconv",
        *(f"efficientnet-b{i}" for i in range(8)),
    }
    assert set(decoder_factory.DECODERS) == {"fpn", "nasfpn", "identity"}


def test_spinenet_keys_reach_the_constructor():
    params = _params(
        architecture={"backbone": "spinenet"},
        batch_norm_activation={"activation": "swish", "batch_norm_momentum": 0.9},
        spinenet={
            "model_id": "49S",
            "init_drop_connect_rate": 0.2,
            "use_native_resize_op": True,
            "endpoints_num_filters": 24,
            "filter_size_scale": 0.25,
            "resample_alpha": 0.25,
            "block_repeats": 2,
        },
    )
    backbone = backbone_factory.backbone_from_params(params)
    assert isinstance(backbone, SpineNet) and backbone.name == "spinenet"
    assert backbone.scaling == dict(
        endpoints_num_filters=24, filter_size_scale=0.25, resample_alpha=0.25, block_repeats=2
    )
    assert backbone.output_channels == {str(level): 24 for level in range(3, 8)}
    assert all(len(group.blocks) == 2 for group in backbone._groups)
    # Block i of 15 drops with rate 0.2 * (i + 1) / 15.
    assert backbone._groups[-1].blocks[0]._drop_connect.drop_rate == pytest.approx(0.2)
    assert backbone._groups[0].blocks[0]._drop_connect.drop_rate == pytest.approx(0.2 / 15)
    assert backbone._resamples[0][0]._use_native_resize_op is True
    assert _norm_config(backbone._stem_norm) == dict(
        momentum=0.9, epsilon=1e-4, activation="swish", trainable=True
    )


def test_spinenet_model_id_alone_gives_its_published_scaling():
    backbone = backbone_factory.backbone_from_params(
        _params(architecture={"backbone": "spinenet"}, spinenet={"model_id": "190"})
    )
    assert backbone.scaling == dict(
        endpoints_num_filters=512, filter_size_scale=1.3, resample_alpha=1.0, block_repeats=4
    )


def test_spinenet_mbconv_keys_reach_the_constructor():
    params = _params(
        architecture={"backbone": "spinenet_mbconv"},
        spinenet_mbconv={
            "model_id": "49XS",
            "se_ratio": 0.0,
            "endpoints_num_filters": 16,
            "filter_size_scale": 0.3,
            "block_repeats": 2,
        },
    )
    backbone = backbone_factory.backbone_from_params(params)
    assert isinstance(backbone, SpineNetMBConv) and backbone.name == "spinenet_mbconv"
    assert backbone.scaling == dict(
        endpoints_num_filters=16, filter_size_scale=0.3, block_repeats=2
    )
    blocks = [block for group in backbone._groups for block in group.blocks]
    assert len(blocks) == 2 * 16 and all(block._se is None for block in blocks)


@pytest.mark.parametrize("name", sorted(EFFICIENTNET_PARAMS))
def test_efficientnet_names_build_their_published_scaling(name):
    # Construction only (no weights), so even b7 is cheap.
    params = _params(architecture={"backbone": name}, batch_norm_activation={"use_sync_bn": True})
    backbone = backbone_factory.backbone_from_params(params)
    width, depth, _, _ = EFFICIENTNET_PARAMS[name]
    assert isinstance(backbone, EfficientNet) and backbone.name == "efficientnet"
    assert backbone.num_blocks == sum(math.ceil(depth * stage[0]) for stage in B0_STAGES)
    assert backbone.output_channels["5"] == mbconv.round_filters(320, width)
    # EfficientNet's own batch norm and swish, whatever batch_norm_activation says; whether
    # batch norm is synchronized follows the params.
    assert _norm_config(backbone._stem_norm) == dict(
        momentum=0.99, epsilon=1e-3, activation="swish", trainable=True
    )
    assert backbone._stem_norm.get_config()["use_sync_bn"] is True


def test_efficientnet_coefficients_override_the_model():
    params = _params(
        architecture={"backbone": "efficientnet-b7"},
        efficientnet={"width_coefficient": 0.25, "depth_coefficient": 0.1},
    )
    backbone = backbone_factory.backbone_from_params(params)
    assert backbone.num_blocks == len(B0_STAGES)
    assert backbone.output_channels == {
        str(level): mbconv.round_filters(c, 0.25)
        for level, c in ((2, 24), (3, 40), (4, 112), (5, 320))
    }


def test_nasfpn_keys_reach_the_constructor():
    params = _params(
        architecture={"multilevel_features": "nasfpn"},
        batch_norm_activation={"activation": "relu"},
        dropblock={"dropblock_keep_prob": 0.9, "dropblock_size": 3},
        nasfpn={
            "fpn_feat_dims": 16,
            "min_level": 3,
            "max_level": 7,
            "num_repeats": 2,
            "use_separable_conv": True,
            "init_drop_connect_rate": 0.2,
            "block_fn": "bottleneck",
            "activation": "swish",
            "use_sum_for_combination": True,
        },
    )
    decoder = decoder_factory.decoder_from_params(params)
    assert isinstance(decoder, NasFpn) and decoder.name == "nasfpn"
    assert decoder.output_channels == {str(level): 64 for level in range(3, 8)}
    assert decoder._num_repeats == 2 and decoder._use_separable_conv
    assert decoder._use_sum_for_combination and decoder._init_drop_connect_rate == 0.2
    assert decoder._norm_activation.activation == "swish"
    assert (decoder._dropblock_keep_prob, decoder._dropblock_size) == (0.9, 3)


@pytest.mark.parametrize("key, value", [("min_level", 2), ("max_level", 6)])
def test_nasfpn_levels_must_repeat_the_architecture(key, value):
    params = _params(architecture={"multilevel_features": "nasfpn"}, nasfpn={key: value})
    with pytest.raises(ParamsError, match=f"nasfpn.{key}={value} must equal architecture.{key}"):
        decoder_factory.decoder_from_params(params)


def test_unknown_names_list_what_exists():
    with pytest.raises(ParamsError, match="architecture.backbone='mobilenet'.*efficientnet-b7"):
        backbone_factory.backbone_from_params(_params(architecture={"backbone": "mobilenet"}))
    with pytest.raises(ParamsError, match="multilevel_features='bifpn'.*identity, nasfpn"):
        decoder_factory.decoder_from_params(_params(architecture={"multilevel_features": "bifpn"}))


TINY = {
    "resnet": {"resnet_depth": 10},
    "spinenet": {"model_id": "49S", "filter_size_scale": 0.1, "endpoints_num_filters": 8},
    "efficientnet": {"width_coefficient": 0.1, "depth_coefficient": 0.1},
}


@pytest.mark.parametrize("backbone", ["resnet", "efficientnet-b0", "efficientnet-b7"])
def test_identity_needs_every_level_from_the_backbone(backbone):
    params = _params(architecture={"backbone": backbone, "multilevel_features": "identity"}, **TINY)
    with pytest.raises(ParamsError, match=f"identity.*'{backbone}' gives levels 2-5, not .* 3-7"):
        network_factory.retinanet_network_from_params(params)


def test_identity_feeds_the_backbone_levels_to_the_head():
    params = _params(
        architecture={"backbone": "spinenet", "multilevel_features": "identity"}, **TINY
    )
    network = network_factory.retinanet_network_from_params(params)
    assert network.fpn is None
    backbone = backbone_factory.backbone_from_params(params)
    assert decoder_factory.pyramid_channels(params, backbone, None) == {
        str(level): 8 for level in range(3, 8)
    }


def test_a_shared_head_needs_equal_channels_on_every_level():
    # ResNet levels 3-5 exist but have 128, 256, 512 channels.
    params = _params(
        architecture={
            "backbone": "resnet",
            "multilevel_features": "identity",
            "min_level": 3,
            "max_level": 5,
        },
        **TINY,
    )
    with pytest.raises(ParamsError, match="retinanet_head shares its convolutions.*'3': 128"):
        network_factory.retinanet_network_from_params(params)


class _Levels:
    """Stands for a backbone: only its output channels matter to the check."""

    def __init__(self, channels):
        self.output_channels = channels


@pytest.mark.parametrize("decoder", ["fpn", "nasfpn"])
def test_decoder_that_cannot_take_the_backbone_levels(decoder):
    params = _params(architecture={"multilevel_features": decoder})
    built = decoder_factory.decoder_from_params(params)
    # Levels 4-5 only: both decoders need backbone level 3 (architecture.min_level).
    with pytest.raises(ParamsError, match=f"'{decoder}' cannot take .*: {decoder}: .*"):
        decoder_factory.pyramid_channels(params, _Levels({"4": 8, "5": 8}), built)
    channels = decoder_factory.pyramid_channels(params, _Levels({"3": 8, "4": 8, "5": 8}), built)
    assert channels == {str(level): 256 for level in range(3, 8)}
