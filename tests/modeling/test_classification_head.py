"""Classification head: level aggregation against NumPy, projection, dropout, bad values."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.heads.classification_head import ClassificationHead
from detection.modeling.losses.classification_loss import softmax_cross_entropy


def _features(channels=(4, 4, 4), sizes=(8, 4, 2), seed=0):
    rng = np.random.default_rng(seed)
    return {
        str(level): rng.normal(size=(2, size, size, c)).astype(np.float32)
        for level, size, c in zip((3, 4, 5), sizes, channels)
    }


def _dense(head, pooled):
    kernel, bias = (w.numpy() for w in head._dense.weights)
    return pooled @ kernel + bias


def test_top_uses_only_the_coarsest_level():
    features = _features(channels=(2, 3, 4))
    head = ClassificationHead(num_classes=5)
    logits = head({k: tf.constant(v) for k, v in features.items()}).numpy()
    assert logits.shape == (2, 5)
    np.testing.assert_allclose(logits, _dense(head, features["5"].mean(axis=(1, 2))), atol=1e-5)


def test_all_averages_levels_upsampled_to_the_finest():
    features = _features()
    head = ClassificationHead(num_classes=3, aggregation="all")
    logits = head({k: tf.constant(v) for k, v in features.items()}).numpy()

    def up(x, factor):
        return np.repeat(np.repeat(x, factor, axis=1), factor, axis=2)

    aggregate = (features["3"] + up(features["4"], 2) + up(features["5"], 4)) / 3
    # Not just the mean of the level means: the check must see the spatial alignment too, so
    # compare the pooled aggregate through the same dense layer.
    np.testing.assert_allclose(logits, _dense(head, aggregate.mean(axis=(1, 2))), atol=1e-5)
    with pytest.raises(ValueError, match="one channel count"):
        ClassificationHead(num_classes=3, aggregation="all")(
            {k: tf.constant(v) for k, v in _features(channels=(2, 3, 4)).items()}
        )


def test_projection_and_dropout():
    features = {k: tf.constant(v) for k, v in _features().items()}
    keras.utils.set_random_seed(0)
    head = ClassificationHead(num_classes=3, endpoints_num_filters=6, dropout_rate=0.5)
    inference = head(features, training=False)
    assert [w.shape for w in head.trainable_weights] == [(1, 1, 4, 6), (6,), (6,), (6, 3), (3,)]
    np.testing.assert_allclose(head(features, training=False), inference)  # deterministic
    trained = [head(features, training=True).numpy() for _ in range(3)]
    assert not np.allclose(trained[0], trained[1])  # dropout is active in training only


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"aggregation": "max"}, "classification_head.aggregation"),
        ({"dropout_rate": 1.0}, "classification_head.dropout_rate"),
        ({"endpoints_num_filters": -1}, "classification_head.endpoints_num_filters"),
    ],
)
def test_bad_values_name_their_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        ClassificationHead(num_classes=3, **kwargs)


def test_softmax_cross_entropy_with_smoothing_and_weights():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0]], np.float32)
    labels = np.array([0, 1, -1])  # the third is eval padding
    smoothing = 0.1
    targets = np.eye(3)[labels[:2]] * (1 - smoothing) + smoothing / 3
    log_probs = logits[:2] - np.log(np.exp(logits[:2]).sum(1, keepdims=True))
    expected = -(targets * log_probs).sum(1).mean()
    loss = softmax_cross_entropy(logits, labels, smoothing, weights=[1.0, 1.0, 0.0])
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    plain = softmax_cross_entropy(logits[:2], labels[:2])
    assert float(plain) == pytest.approx(-log_probs[[0, 1], [0, 1]].mean(), rel=1e-6)
    assert float(softmax_cross_entropy(logits, labels, weights=[0.0, 0.0, 0.0])) == 0.0
