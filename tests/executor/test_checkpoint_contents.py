"""Checkpoints hold every model variable, including those of layers kept in lists/dicts."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.executor import checkpoints


class ListOfLayers(keras.Model):
    """Layers in a list and a dict: Keras tracks them, TF's object graph does not."""

    def __init__(self):
        super().__init__()
        self.convs = [keras.layers.Conv2D(4, 3, padding="same", name=f"conv_{i}") for i in range(2)]
        self.norms = {str(i): keras.layers.BatchNormalization(name=f"bn_{i}") for i in range(2)}

    def call(self, x, training=None):
        for i, conv in enumerate(self.convs):
            x = self.norms[str(i)](conv(x), training=training)
        return x


def _build(seed):
    keras.utils.set_random_seed(seed)
    model = ListOfLayers()
    model(tf.zeros([1, 8, 8, 3]))
    return model


def test_round_trip_restores_every_variable(tmp_path):
    model = _build(0)
    # Give BN statistics non-default values: they are exactly what object-based
    # checkpoints of Keras 3 models used to miss.
    model(tf.random.normal([4, 8, 8, 3]) * 3.0 + 1.0, training=True)
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    saver = checkpoints.Checkpointer(
        tf.distribute.get_strategy(), model, optimizer, str(tmp_path), max_to_keep=1
    )
    path = saver.save()
    restored = _build(1)
    checkpoints.restore_model(restored, path)
    assert len(restored.variables) == 12  # 2 x (kernel, bias) + 2 x (gamma, beta, mean, var)
    for original, loaded in zip(model.variables, restored.variables):
        assert original.path.split("/", 1)[1] == loaded.path.split("/", 1)[1]
        np.testing.assert_array_equal(original.numpy(), loaded.numpy())


def test_restore_into_another_architecture_fails_clearly(tmp_path):
    model = _build(0)
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    path = checkpoints.Checkpointer(
        tf.distribute.get_strategy(), model, optimizer, str(tmp_path), max_to_keep=1
    ).save()
    other = keras.Sequential([keras.layers.Dense(3, name="other")])
    other(tf.zeros([1, 2]))
    with pytest.raises(ValueError, match="does not hold this model's variables"):
        checkpoints.restore_model(other, path)
