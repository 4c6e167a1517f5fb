"""Top-k accuracy streamed over batches equals a NumPy sort-based reference."""

import numpy as np
import pytest

from detection.configs import loader
from detection.evaluation import factory
from detection.evaluation.classification_accuracy import ClassificationAccuracy


def _reference_top_k(logits, labels, k):
    """Fraction of rows whose label is among the k largest logits (distinct logits)."""
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean([label in row for row, label in zip(top, labels)]))


def test_streamed_batches_equal_the_sort_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7))
    # Make the labels often right but not always, so that top-1 and top-5 differ.
    labels = np.where(rng.uniform(size=50) < 0.5, logits.argmax(1), rng.integers(0, 7, 50))
    evaluator = ClassificationAccuracy()
    for start in range(0, 50, 16):
        batch = slice(start, start + 16)
        evaluator.update({"logits": logits[batch]}, {"classes": labels[batch]})
    metrics = evaluator.evaluate()
    assert set(metrics) == {"top_1_accuracy", "top_5_accuracy"}
    assert metrics["top_1_accuracy"] == pytest.approx(_reference_top_k(logits, labels, 1))
    assert metrics["top_5_accuracy"] == pytest.approx(_reference_top_k(logits, labels, 5))
    assert metrics["top_1_accuracy"] < metrics["top_5_accuracy"] < 1.0


def test_hand_made_batch_with_padding_and_ties():
    logits = np.array(
        [
            [0.1, 0.9, 0.0],  # label 1: top-1
            [0.5, 0.2, 0.3],  # label 2: rank 2
            [0.4, 0.4, 0.2],  # label 1 ties with class 0: counts as top-1 (tf.nn.in_top_k)
            [0.0, 0.0, 9.0],  # padding: label -1, must be skipped
        ]
    )
    evaluator = ClassificationAccuracy(top_k=(1, 2))
    evaluator.update(
        {"logits": logits, "valid": np.array([True, True, True, False])},
        {"classes": np.array([1, 2, 1, -1])},
    )
    assert evaluator.evaluate() == {"top_1_accuracy": 2 / 3, "top_2_accuracy": 1.0}
    evaluator.reset()
    with pytest.raises(ValueError, match="no valid example"):
        evaluator.evaluate()


def test_label_outside_the_classes_is_an_error():
    evaluator = ClassificationAccuracy()
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        evaluator.update({"logits": np.zeros((2, 3))}, {"classes": np.array([0, 3])})


def test_customized_eval_type_is_top_k_for_classification():
    params = loader.load_params("classification")
    assert params.eval.type == "customized"
    assert isinstance(factory.evaluator_from_params(params), ClassificationAccuracy)
