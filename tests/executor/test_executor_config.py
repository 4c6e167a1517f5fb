"""Executor settings read from params: defaults and rejected combinations."""

import pytest

from detection.configs import factory
from detection.executor import config as config_lib


class _TwoReplicaStrategy:
    """Stands in for a 2-replica MirroredStrategy (not a TPUStrategy)."""

    num_replicas_in_sync = 2


def _params(**train):
    params = factory.config_generator("retinanet")
    params.override({"train": train, "batch_norm_activation": {"use_sync_bn": True}})
    return params


def test_sync_bn_with_xla_on_mirrored_replicas_is_rejected():
    with pytest.raises(ValueError, match="use_sync_bn=true with train.jit_compile=true"):
        config_lib.from_params(_params(jit_compile=True), _TwoReplicaStrategy())


def test_sync_bn_without_xla_is_accepted_and_defaults_apply():
    config = config_lib.from_params(_params(jit_compile=False), _TwoReplicaStrategy())
    assert not config.jit_compile
    assert config.checkpoint_interval == config.iterations_per_loop == 100
    assert config.checkpoint_max_to_keep == 5
