"""Every registered backbone and decoder builds and runs a train step in every model type.

The parts come from the registries themselves (backbones/factory.py, decoders/factory.py,
model_fns/factory.py), so a part registered later is included automatically; it only needs a
tiny params override below, and `test_every_registered_part_is_covered` fails until it has one.
Everything is tiny: batch 2, 8-channel widths, one cell or conv, 128 px images with levels
3-7 (SpineNet's block specs and NAS-FPN's searched cells are defined on levels 3-7, and the
coarsest stride 128 must divide the input).

Coverage (one compiled train step takes seconds on CPU and the suite has a time budget, so
not every triple is stepped):
- `retinanet` steps every backbone once and every decoder at least once (`EVERY_BACKBONE`),
  compiled with XLA; every valid pair builds (`test_every_valid_pair_builds`).
- every other model type steps one pair with a backbone other than ResNet as a plain graph
  (their own tests compile their step with XLA on ResNet + FPN; compiling a SpineNet or
  NAS-FPN two-stage model takes minutes on CPU), the model types rotating through backbones
  and decoders. All their parts are the same layers as RetinaNet's, so what this leaves out
  is only a pairing of already-stepped parts in an already-stepped model type.
- EfficientNet-b1..b7 differ from b0 only by the width/depth coefficients that the tiny
  override replaces, so b0's steps stand for them (`test_shared_backbones_are_identical`).
Combinations invalid by design (`identity` on a backbone ending at level 5 for the detectors,
any decoder in classification) must fail with a ParamsError naming the reason before a weight
is created; they are checked for every model type.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.configs import loader
from detection.configs.merge import merge_dicts
from detection.core.modes import TRAIN
from detection.hyperparameters import ParamsError
from detection.model_fns import factory as model_fn_factory
from detection.modeling.backbones import factory as backbone_factory
from detection.modeling.decoders import factory as decoder_factory

IMAGE_SIZE = 128
EFFICIENTNETS = [f"efficientnet-b{i}" for i in range(8)]


def _train(data):
    return {"train": {"train_batch_size": 2, "train_file_pattern": data["train_file_pattern"]}}


def _architecture(**extra):
    levels = {"min_level": 3, "max_level": 7}
    return {"architecture": {**levels, "num_classes": 4, "use_bfloat16": False, **extra}}


def _two_stage(data):
    return merge_dicts(
        merge_dicts(_architecture(mask_target_size=8), _train(data)),
        {
            "anchor": {"num_scales": 1, "anchor_size": 3.0},
            "rpn_head": {"num_filters": 8},
            "frcnn_head": {"num_filters": 8, "fc_dims": 16},
            "mrcnn_head": {"num_convs": 1, "num_filters": 8},
            "rpn_score_loss": {"rpn_batch_size_per_im": 32},
            "maskrcnn_parser": {
                "output_size": [IMAGE_SIZE, IMAGE_SIZE],
                "max_num_instances": 8,
                "mask_crop_size": 16,
                "rpn_batch_size_per_im": 32,
            },
            # Test-time sizes too: building the model runs inference once, eagerly, and an
            # eager NMS loop costs one Python iteration per kept box.
            "roi_proposal": {
                "rpn_pre_nms_top_k": 64,
                "rpn_post_nms_top_k": 16,
                "test_rpn_pre_nms_top_k": 64,
                "test_rpn_post_nms_top_k": 16,
            },
            "roi_sampling": {"num_samples_per_image": 16},
            "mask_sampling": {"num_mask_samples_per_image": 8},
            "postprocess": {"pre_nms_num_boxes": 64, "max_total_size": 16},
        },
    )


# Per model type: the tiny dataset fixture it trains on, and a function of that dataset's
# paths giving the override that makes the model tiny. A model type registered in
# model_fns/factory.py without an entry here fails `test_every_registered_part_is_covered`.
MODEL_TINY = {
    "retinanet": (
        "tiny_shapes",
        lambda data: merge_dicts(
            merge_dicts(_architecture(), _train(data)),
            {
                "retinanet_head": {"num_convs": 1, "num_filters": 8},
                "anchor": {"num_scales": 1, "aspect_ratios": [1.0]},
                "retinanet_parser": {
                    "output_size": [IMAGE_SIZE, IMAGE_SIZE],
                    "max_num_instances": 8,
                },
            },
        ),
    ),
    "mask_rcnn": ("tiny_shapes", _two_stage),
    "cascade_mask_rcnn": (
        "tiny_shapes",
        lambda data: merge_dicts(
            _two_stage(data), {"roi_sampling": {"cascade_iou_thresholds": [0.6, 0.7]}}
        ),
    ),
    "shapemask": (
        "tiny_shapes",
        lambda data: merge_dicts(
            merge_dicts(_architecture(), _train(data)),
            {
                # ShapeMask's default is the original's sstable, not readable here.
                "train": {"train_dataset_type": "tfrecord"},
                "retinanet_head": {"num_convs": 1, "num_filters": 8},
                "anchor": {"num_scales": 1, "anchor_size": 3.0},
                "shapemask_parser": {
                    "output_size": [IMAGE_SIZE, IMAGE_SIZE],
                    "max_num_instances": 8,
                    "num_sampled_masks": 2,
                    "mask_crop_size": 8,
                    "upsample_factor": 2,
                    "mask_min_level": 3,
                    "mask_max_level": 4,
                },
                "shapemask_head": {
                    "mask_crop_size": 8,
                    "upsample_factor": 2,
                    "num_downsample_channels": 8,
                    "num_convs": 1,
                },
            },
        ),
    ),
    "classification": (
        "tiny_classification_shapes",
        lambda data: merge_dicts(
            merge_dicts(_architecture(), _train(data)),
            {
                "classification_parser": {"output_size": [IMAGE_SIZE, IMAGE_SIZE]},
                "classification_head": {"endpoints_num_filters": 8},
            },
        ),
    ),
    "segmentation": (
        "tiny_segmentation_shapes",
        lambda data: merge_dicts(
            # Pyramid fusion sums every level into the head's, so every decoder weight is
            # reached by the loss (the head alone reads level 3 only).
            merge_dicts(_architecture(use_pyramid_fusion=True), _train(data)),
            {
                "segmentation_head": {"num_convs": 1, "upsample_num_filters": 8},
                "segmentation_parser": {"output_size": [IMAGE_SIZE, IMAGE_SIZE]},
                # The default freezes a ResNet's stem by its variable names.
                "train": {"frozen_variable_prefix": None},
            },
        ),
    ),
}

# Per backbone: tiny widths / ids.
BACKBONE_TINY = {
    "resnet": {"resnet": {"resnet_depth": 10}},
    "spinenet": {
        "spinenet": {"model_id": "49S", "filter_size_scale": 0.1, "endpoints_num_filters": 8}
    },
    "spinenet_mbconv": {
        "spinenet_mbconv": {
            "model_id": "49XS",
            "filter_size_scale": 0.2,
            "endpoints_num_filters": 8,
        }
    },
    **{
        name: {"efficientnet": {"width_coefficient": 0.1, "depth_coefficient": 0.1}}
        for name in EFFICIENTNETS
    },
}

DECODER_TINY = {
    "fpn": {"fpn": {"fpn_feat_dims": 8}},
    "nasfpn": {"nasfpn": {"fpn_feat_dims": 8, "num_repeats": 1}},
    "identity": {},
}

# The EfficientNets differ only in width/depth coefficients, which the tiny override
# replaces: at tiny size b1..b7 are b0's network (`test_shared_backbones_are_identical`
# checks it), so b0's build and step stand for them.
SHARED = {name: "efficientnet-b0" for name in EFFICIENTNETS[1:]}

EVERY_BACKBONE = ("retinanet",)
ENDS_AT_LEVEL_5 = ("resnet", *EFFICIENTNETS)


def rejection(model, backbone, decoder):
    """The ParamsError message expected for an invalid combination, or None if it is valid."""
    if model == "classification":
        return None if decoder == "identity" else "only 'identity' is supported"
    if decoder == "identity" and backbone in ENDS_AT_LEVEL_5 and model != "segmentation":
        # The detectors' heads need levels 3-6; segmentation reads its head's level only.
        return "gives levels 2-5"
    return None


def _valid_decoders(model, backbone):
    return [d for d in decoder_factory.DECODERS if rejection(model, backbone, d) is None]


def _stepped():
    """[(model, backbone, decoder)] that run a train step.

    RetinaNet steps every backbone, the decoders in turn. Each other model type steps one
    pair with a backbone other than ResNet (its own tests step ResNet + FPN), the model types
    rotating through the backbones and decoders, so that the suite stays within its time
    budget while every model type is shown to take the zoo's parts.
    """
    backbones = [b for b in backbone_factory.BACKBONES if b not in SHARED]
    others = [b for b in backbones if b != "resnet"]
    triples = []
    for i, model in enumerate(model_fn_factory.MODELS):
        if model in EVERY_BACKBONE:
            # Every backbone once, the decoders in turn (skipping ones invalid for it).
            decoders = list(decoder_factory.DECODERS)
            for j, backbone in enumerate(backbones):
                order = decoders[j % len(decoders) :] + decoders[: j % len(decoders)]
                valid = _valid_decoders(model, backbone)
                triples.append((model, backbone, next(d for d in order if d in valid)))
            continue
        backbone = others[i % len(others)]
        valid = _valid_decoders(model, backbone)
        # A real decoder where the model has one (identity is RetinaNet's and classification's
        # case; segmentation's default pyramid fusion needs equal channels on every level).
        valid = [d for d in valid if d != "identity"] or valid
        triples.append((model, backbone, valid[i % len(valid)]))
    return triples


def _rejected():
    return [
        (model, backbone, decoder)
        for model in model_fn_factory.MODELS
        for backbone in backbone_factory.BACKBONES
        for decoder in decoder_factory.DECODERS
        if backbone not in SHARED and rejection(model, backbone, decoder) is not None
    ]


def _ids(triples):
    return [pytest.param(*t, id="-".join(t)) for t in triples]


def _params(model, backbone, decoder, data):
    if model not in MODEL_TINY:
        pytest.fail(f"model type {model!r} has no tiny params: add it to MODEL_TINY in {__file__}")
    override = merge_dicts(MODEL_TINY[model][1](data), BACKBONE_TINY[backbone])
    if model == "classification" and backbone not in ENDS_AT_LEVEL_5:
        # SpineNet's classifiers average every level (`all`, as the original's files set it),
        # so every endpoint is reached by the loss; `top` would leave the lower ones out.
        # ResNet and EfficientNet keep `top`: their levels differ in channels, and every
        # weight already lies on the path to the top level.
        override = merge_dicts(override, {"classification_head": {"aggregation": "all"}})
    defaults = loader.load_params(model)
    # Classification has no decoder sections: its invalid decoders are named, not sized.
    decoder_tiny = {k: v for k, v in DECODER_TINY[decoder].items() if k in defaults}
    override = merge_dicts(override, decoder_tiny)
    override = merge_dicts(
        override, {"architecture": {"backbone": backbone, "multilevel_features": decoder}}
    )
    return loader.load_params(model, params_override=override)


def test_every_registered_part_is_covered():
    for model in model_fn_factory.MODELS:
        assert model in MODEL_TINY, f"add tiny params for model type {model!r} to MODEL_TINY"
    for backbone in backbone_factory.BACKBONES:
        assert backbone in BACKBONE_TINY, f"add tiny params for backbone {backbone!r}"
    for decoder in decoder_factory.DECODERS:
        assert decoder in DECODER_TINY, f"add tiny params for decoder {decoder!r}"
    stepped = set(_stepped())
    # Every model type takes a step ...
    assert {t[0] for t in stepped} == set(model_fn_factory.MODELS)
    # ... and in RetinaNet every backbone and every decoder does.
    for model in EVERY_BACKBONE:
        for backbone in backbone_factory.BACKBONES:
            assert any(t[:2] == (model, SHARED.get(backbone, backbone)) for t in stepped)
        for decoder in decoder_factory.DECODERS:
            assert any(t[0::2] == (model, decoder) for t in stepped), (model, decoder)


def _valid_pairs(model):
    return [
        (model, b, d)
        for b in backbone_factory.BACKBONES
        for d in decoder_factory.DECODERS
        if b not in SHARED and rejection(model, b, d) is None
    ]


@pytest.mark.parametrize("model, backbone, decoder", _ids(_valid_pairs("retinanet")))
def test_every_valid_pair_builds(model, backbone, decoder, request):
    """Every valid RetinaNet backbone x decoder pair builds and runs forward (no XLA step)."""
    data = request.getfixturevalue(MODEL_TINY[model][0])
    model_fn = model_fn_factory.model_fn_from_params(_params(model, backbone, decoder, data))
    network = model_fn.build_model()
    outputs = network(tf.zeros([1, IMAGE_SIZE, IMAGE_SIZE, 3]), training=False)
    for tensor in tf.nest.flatten(outputs):
        assert np.all(np.isfinite(tensor.numpy()))


@pytest.fixture(scope="module")
def batches(request):
    """One train batch per model type, from its own input pipeline (shared by its steps)."""
    cache = {}

    def get(model):
        if model not in cache:
            data = request.getfixturevalue(MODEL_TINY[model][0])
            params = _params(model, "resnet", _valid_decoders(model, "resnet")[0], data)
            model_fn = model_fn_factory.model_fn_from_params(params)
            cache[model] = next(iter(model_fn.input_fn(TRAIN)(None)))
        return cache[model]

    return get


LEARNING_RATE = 0.01


def _train_step(model_fn, model, jit_compile):
    variables = model.trainable_variables
    optimizer = keras.optimizers.SGD(LEARNING_RATE)
    optimizer.build(variables)

    @tf.function(jit_compile=jit_compile)
    def step(features, labels):
        with tf.GradientTape() as tape:
            loss = model_fn(model, features, labels, TRAIN)["total_loss"]
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return loss, grads

    return step


@pytest.mark.parametrize("model, backbone, decoder", _ids(_stepped()))
def test_one_train_step(model, backbone, decoder, request, batches):
    """RetinaNet's steps compile with XLA (every backbone and decoder); the other model types'
    pairings run as a plain graph (their own tests compile them with XLA on ResNet + FPN)."""
    features, labels = batches(model)
    data = request.getfixturevalue(MODEL_TINY[model][0])
    keras.utils.set_random_seed(0)
    model_fn = model_fn_factory.model_fn_from_params(_params(model, backbone, decoder, data))
    network = model_fn.build_model()
    variables = network.trainable_variables
    before = [v.numpy() for v in variables]
    step = _train_step(model_fn, network, jit_compile=model in EVERY_BACKBONE)
    loss, grads = step(features, labels)
    assert np.isfinite(loss.numpy())
    # Every trained weight is reached by the loss (no part left dangling) ...
    missing = [v.path for v, g in zip(variables, grads) if g is None]
    assert not missing, missing
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    # ... and the step applied them: w <- w - lr * g.
    assert sum(np.any(g.numpy() != 0) for g in grads) > len(variables) // 2
    for old, grad, variable in zip(before, grads, variables):
        expected = old - LEARNING_RATE * grad.numpy()
        np.testing.assert_allclose(variable.numpy(), expected, atol=1e-6, err_msg=variable.path)


@pytest.mark.parametrize("model, backbone, decoder", _ids(_rejected()))
def test_invalid_combination_is_a_params_error(model, backbone, decoder, request):
    data = request.getfixturevalue(MODEL_TINY[model][0])
    model_fn = model_fn_factory.model_fn_from_params(_params(model, backbone, decoder, data))
    with pytest.raises(ParamsError, match=rejection(model, backbone, decoder)):
        model_fn.build_model()


def test_shared_backbones_are_identical(tiny_shapes):
    def weights(name):
        params = _params("retinanet", name, "fpn", tiny_shapes)
        backbone = backbone_factory.backbone_from_params(params)
        backbone(tf.zeros([1, IMAGE_SIZE, IMAGE_SIZE, 3]), training=False)
        return [(v.path, tuple(v.shape)) for v in backbone.weights]

    for name, representative in SHARED.items():
        assert weights(name) == weights(representative), name
    # The shared combinations are rejected or valid exactly as their representative is.
    for name, representative in SHARED.items():
        for model in model_fn_factory.MODELS:
            for decoder in decoder_factory.DECODERS:
                assert rejection(model, name, decoder) == rejection(model, representative, decoder)
