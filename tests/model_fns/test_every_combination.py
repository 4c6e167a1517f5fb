"""Every registered backbone x decoder x model type builds and runs one XLA train step.

The combinations come from the registries themselves (backbones/factory.py,
decoders/factory.py, model_fns/factory.py), so a part registered later is included
automatically; it only needs a tiny params override below, and the test fails until it has
one. Everything is tiny: 64 px images, batch 2, 8-channel widths, one cell or conv.
Combinations invalid by design must fail with a ParamsError before anything is built.
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

IMAGE_SIZE = 64
EFFICIENTNETS = [f"efficientnet-b{i}" for i in range(8)]

# Per model type: a function of the tiny shapes dataset's paths giving the params override
# that makes the model tiny and trains it on that data. A model type registered in
# model_fns/factory.py without an entry here fails `test_every_registered_part_is_covered`.
MODEL_TINY = {
    "retinanet": lambda data: {
        "architecture": {"num_classes": 4, "use_bfloat16": False},
        "retinanet_head": {"num_convs": 1, "num_filters": 8},
        "anchor": {"num_scales": 1, "aspect_ratios": [1.0]},
        "retinanet_parser": {"output_size": [IMAGE_SIZE, IMAGE_SIZE], "max_num_instances": 8},
        "train": {"train_batch_size": 2, "train_file_pattern": data["train_file_pattern"]},
    },
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

# Invalid by design: identity hands the backbone's levels 3-7 to the heads, and ResNet and
# EfficientNet end at level 5.
REJECTED = {(name, "identity"): "gives levels 2-5" for name in ["resnet", *EFFICIENTNETS]}

# The EfficientNets differ only in width/depth coefficients, which the tiny override
# replaces: at tiny size b1..b7 are b0's network (`test_shared_backbones_are_identical`
# checks it), so b0's build and step stand for them.
SHARED = {name: "efficientnet-b0" for name in EFFICIENTNETS[1:]}


def _combinations(rejected):
    return [
        pytest.param(model, backbone, decoder, id=f"{model}-{backbone}-{decoder}")
        for model in model_fn_factory.MODELS
        for backbone in backbone_factory.BACKBONES
        for decoder in decoder_factory.DECODERS
        if ((backbone, decoder) in REJECTED) == rejected and backbone not in SHARED
    ]


def _params(model, backbone, decoder, data):
    if model not in MODEL_TINY:
        pytest.fail(f"model type {model!r} has no tiny params: add it to MODEL_TINY in {__file__}")
    override = merge_dicts(MODEL_TINY[model](data), BACKBONE_TINY[backbone])
    override = merge_dicts(override, DECODER_TINY[decoder])
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
    # Every (backbone, decoder) pair is either stepped, rejected, or shared with a stepped one.
    stepped = {tuple(p.values[1:]) for p in _combinations(rejected=False)}
    for backbone in backbone_factory.BACKBONES:
        for decoder in decoder_factory.DECODERS:
            pair = (SHARED.get(backbone, backbone), decoder)
            assert pair in stepped or (backbone, decoder) in REJECTED, (backbone, decoder)


@pytest.fixture(scope="module")
def batches(tiny_shapes):
    """One train batch per model type, from its own input pipeline (shared by its steps)."""
    cache = {}

    def get(model):
        if model not in cache:
            params = _params(model, "resnet", "fpn", tiny_shapes)
            model_fn = model_fn_factory.model_fn_from_params(params)
            cache[model] = next(iter(model_fn.input_fn(TRAIN)(None)))
        return cache[model]

    return get


LEARNING_RATE = 0.01


def _train_step(model_fn, model):
    variables = model.trainable_variables
    optimizer = keras.optimizers.SGD(LEARNING_RATE)
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def step(features, labels):
        with tf.GradientTape() as tape:
            loss = model_fn(model, features, labels, TRAIN)["total_loss"]
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return loss, grads

    return step


@pytest.mark.parametrize("model, backbone, decoder", _combinations(rejected=False))
def test_one_xla_train_step(model, backbone, decoder, tiny_shapes, batches):
    features, labels = batches(model)
    keras.utils.set_random_seed(0)
    model_fn = model_fn_factory.model_fn_from_params(_params(model, backbone, decoder, tiny_shapes))
    network = model_fn.build_model()
    variables = network.trainable_variables
    before = [v.numpy() for v in variables]
    loss, grads = _train_step(model_fn, network)(features, labels)
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


@pytest.mark.parametrize("model, backbone, decoder", _combinations(rejected=True))
def test_invalid_combination_is_a_params_error(model, backbone, decoder, tiny_shapes):
    model_fn = model_fn_factory.model_fn_from_params(_params(model, backbone, decoder, tiny_shapes))
    with pytest.raises(ParamsError, match=REJECTED[(backbone, decoder)]):
        model_fn.build_model()


def test_shared_backbones_are_identical(tiny_shapes):
    def weights(name):
        params = _params(model_fn_factory.MODELS[0], name, "fpn", tiny_shapes)
        backbone = backbone_factory.backbone_from_params(params)
        backbone(tf.zeros([1, IMAGE_SIZE, IMAGE_SIZE, 3]), training=False)
        return [(v.path, tuple(v.shape)) for v in backbone.weights]

    for name, representative in SHARED.items():
        assert weights(name) == weights(representative), name
    # The shared combinations really were rejected or stepped under the representative.
    for name, representative in SHARED.items():
        for decoder in decoder_factory.DECODERS:
            assert ((name, decoder) in REJECTED) == ((representative, decoder) in REJECTED)
