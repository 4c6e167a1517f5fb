"""Shared fixtures: a tiny synthetic shapes dataset generated once per test session.

Tests compile many tiny XLA programs that run for milliseconds, and LLVM's optimizations take
a large part of their compile time (40 % of a tiny SpineNet train step's), so the suite
compiles without them. XLA reads its flags once, at the first compile, which pytest reaches
only after loading this module.
"""

import os

import pytest

from detection.tools import make_shapes_dataset

_FAST_COMPILE = "--xla_backend_optimization_level=0"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()


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
