"""Shared fixtures: a tiny synthetic shapes dataset generated once per test session."""

import pytest

from detection.tools import make_shapes_dataset


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """Paths of a 24-train / 8-val shapes dataset of 64x64 images (with masks)."""
    root = tmp_path_factory.mktemp("shapes")
    return make_shapes_dataset.ensure_shapes_dataset(
        str(root),
        num_train=24,
        num_val=8,
        image_size=64,
        seed=1,
        num_train_shards=2,
        num_val_shards=1,
    )


@pytest.fixture(scope="session")
def tiny_classification_shapes(tmp_path_factory):
    """Paths of a 24-train / 10-val classification shapes dataset of 64x64 images."""
    root = tmp_path_factory.mktemp("shapes_classification")
    return make_shapes_dataset.ensure_shapes_dataset(
        str(root),
        num_train=24,
        num_val=10,
        image_size=64,
        seed=1,
        num_train_shards=2,
        num_val_shards=1,
        variant="classification",
    )


@pytest.fixture(scope="session")
def tiny_segmentation_shapes(tmp_path_factory):
    """Paths of a 24-train / 8-val segmentation shapes dataset of 64x64 images."""
    root = tmp_path_factory.mktemp("shapes_segmentation")
    return make_shapes_dataset.ensure_shapes_dataset(
        str(root),
        num_train=24,
        num_val=8,
        image_size=64,
        seed=1,
        num_train_shards=2,
        num_val_shards=1,
        variant="segmentation",
    )
