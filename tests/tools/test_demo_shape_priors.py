"""The demo's ShapeMask step: the prior file its shapes configs name, made from the train
records with the clustering the params imply (compared with make_shape_priors run by hand)."""

import os
import pathlib

import numpy as np

from detection.tools import demo, make_shape_priors

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs" / "shapes"
FULL = [str(CONFIGS / "shapemask.yaml")]
PARTIAL = FULL + [str(CONFIGS / "shapemask_partial.yaml")]
CLUSTERS = 3


def _override(paths):
    return {"train": {"train_file_pattern": paths["train_file_pattern"]}}


def _by_hand(paths, out, *flags):
    argv = [
        f"--file_pattern={paths['train_file_pattern']}",
        f"--output_path={out}",
        "--num_classes=4",
        f"--num_clusters={CLUSTERS}",
        "--prior_size=16",
        *flags,
    ]
    assert make_shape_priors.main(argv) == 0
    return np.load(out)


def test_per_class_priors_go_into_the_data_dir(tiny_shapes, tmp_path):
    override = demo.ensure_shape_priors(FULL, _override(tiny_shapes), {}, str(tmp_path), CLUSTERS)
    path = str(tmp_path / "shape_priors.npy")
    assert override["shapemask_head"]["shape_prior_path"] == path
    assert override["train"] == _override(tiny_shapes)["train"]
    made = np.load(path)
    assert made.shape == (4, CLUSTERS, 16, 16)
    np.testing.assert_array_equal(made, _by_hand(tiny_shapes, tmp_path / "hand.npy"))


def test_partial_priors_are_class_agnostic_from_the_training_classes(tiny_shapes, tmp_path):
    override = demo.ensure_shape_priors(
        PARTIAL, _override(tiny_shapes), {}, str(tmp_path), CLUSTERS
    )
    path = override["shapemask_head"]["shape_prior_path"]
    assert path == str(tmp_path / "shape_priors_circles_squares.npy")
    made = np.load(path)
    assert made.shape == (1, CLUSTERS, 16, 16)
    by_hand = _by_hand(tiny_shapes, tmp_path / "hand.npy", "--class_agnostic", "--classes=1,2")
    np.testing.assert_array_equal(made, by_hand)
    # The triangles (class 3) are held out: with them the priors differ.
    with_triangles = _by_hand(tiny_shapes, tmp_path / "all.npy", "--class_agnostic")
    assert not np.array_equal(made, with_triangles)


def test_an_existing_file_is_kept_and_a_named_path_is_used(tiny_shapes, tmp_path):
    named = str(tmp_path / "mine.npy")
    np.save(named, np.zeros((4, 1, 16, 16), np.float32))
    extra = {"shapemask_head": {"shape_prior_path": named}}
    override = demo.ensure_shape_priors(
        FULL, {**_override(tiny_shapes), **extra}, extra, str(tmp_path / "data"), CLUSTERS
    )
    assert override["shapemask_head"]["shape_prior_path"] == named
    assert np.load(named).shape == (4, 1, 16, 16)  # Not clustered again.
    assert not os.path.exists(tmp_path / "data")


def test_no_prior_path_makes_nothing(tiny_shapes, tmp_path):
    extra = {"shapemask_head": {"shape_prior_path": ""}}
    override = demo.ensure_shape_priors(
        FULL, {**_override(tiny_shapes), **extra}, extra, str(tmp_path), CLUSTERS
    )
    assert override["shapemask_head"]["shape_prior_path"] == ""
    assert os.listdir(tmp_path) == []
