"""A network's first call builds it in one pass: the network and its heads (`Composite`) are
not traced symbolically by Keras before their first real call, so building a Mask R-CNN runs
each `call` exactly once (Keras' default would run the network twice and each head three
times)."""

import functools

import keras
import maskrcnn_tiny
import numpy as np
import pytest

from detection.model_fns import factory as model_fn_factory
from detection.modeling.heads.fast_rcnn_head import FastRCNNHead
from detection.modeling.heads.mask_head import MaskHead
from detection.modeling.heads.rpn_head import RpnHead
from detection.modeling.layers.composite import Composite
from detection.modeling.networks.maskrcnn_network import MaskRCNNNetwork

COUNTED = (MaskRCNNNetwork, RpnHead, FastRCNNHead, MaskHead)


def _count_calls(monkeypatch, classes):
    counts = {cls.__name__: 0 for cls in classes}
    for cls in classes:

        @functools.wraps(cls.call)
        def counted(self, *args, _call=cls.call, _name=cls.__name__, **kwargs):
            counts[_name] += 1
            return _call(self, *args, **kwargs)

        monkeypatch.setattr(cls, "call", counted)
    return counts


def test_building_runs_each_call_once(monkeypatch, tiny_shapes):
    counts = _count_calls(monkeypatch, COUNTED)
    keras.utils.set_random_seed(0)
    model_fn = model_fn_factory.model_fn_from_params(maskrcnn_tiny.tiny_params(tiny_shapes))
    network = model_fn.build_model()
    assert counts == {cls.__name__: 1 for cls in COUNTED}
    assert network.built and all(layer.built for layer in network._flatten_layers())
    # Every part made its variables, in the places the checkpoints name.
    names = {v.path.split("/")[1] for v in network.weights}
    assert len(network.trainable_weights) > 0 and len(names) > 1


def test_composites_hold_no_variables_of_their_own(tiny_shapes):
    """`Composite.build` locks the layer's own state: it is for layers whose variables all
    belong to sublayers."""
    keras.utils.set_random_seed(0)
    network = model_fn_factory.model_fn_from_params(
        maskrcnn_tiny.tiny_params(tiny_shapes)
    ).build_model()
    composites = [layer for layer in network._flatten_layers() if isinstance(layer, Composite)]
    assert {type(layer) for layer in composites} >= set(COUNTED)
    for layer in composites:
        own = {id(v) for v in layer.weights} - {
            id(v) for sub in layer._flatten_layers(include_self=False) for v in sub.weights
        }
        assert not own, type(layer).__name__


@pytest.mark.parametrize("composite", [False, True])
def test_keras_traces_an_unbuilt_composite_first_unless_it_is_composite(composite):
    """The behaviour `Composite` relies on (a Keras upgrade that changes it fails here)."""

    class Inner(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    bases = (Composite, keras.layers.Layer) if composite else (keras.layers.Layer,)
    runs = []

    def call(self, x):
        runs.append(1)
        return self.inner(x)

    def init(self):
        keras.layers.Layer.__init__(self)
        self.inner = Inner()

    outer = type("Outer", bases, {"__init__": init, "call": call})()
    outer(np.ones([1, 3], np.float32))
    assert len(runs) == (1 if composite else 2)
