"""make_shape_priors: k-means recovers a known cluster structure; the tool's priors of the shapes
dataset look like circles, squares and triangles; the file format; bad input exits 2."""

import numpy as np
import pytest
import tensorflow as tf

from detection.tools import make_shape_priors

SIZE = 16


def _templates():
    rows, cols = np.mgrid[:SIZE, :SIZE] + 0.5
    disk = ((rows - 8) ** 2 + (cols - 8) ** 2 <= 36).astype(np.float64)
    square = np.zeros((SIZE, SIZE))
    square[2:14, 2:14] = 1
    triangle = (cols <= rows).astype(np.float64)
    return np.stack([disk, square, triangle])


def test_kmeans_recovers_the_clusters_of_noisy_templates():
    rng = np.random.default_rng(0)
    templates = _templates()
    labels = np.repeat(np.arange(3), 50)
    # Each sample: its template with 5% of the pixels flipped.
    flips = rng.uniform(size=(150, SIZE, SIZE)) < 0.05
    points = np.abs(templates[labels] - flips).reshape(150, -1)
    centroids, assignment, inertia = make_shape_priors.kmeans(points, 3, seed=1)
    # Each centroid is its cluster's template blurred by the flips: within 0.2 per pixel.
    matched = []
    for centroid in centroids:
        errors = np.abs(templates.reshape(3, -1) - centroid).max(axis=1)
        matched.append(int(np.argmin(errors)))
        assert errors.min() < 0.2
    assert sorted(matched) == [0, 1, 2]
    # The assignment is the generating one, up to the cluster names.
    np.testing.assert_array_equal(np.asarray(matched)[assignment], labels)
    expected = sum(
        np.sum((points[labels == k] - centroids[matched.index(k)]) ** 2) for k in range(3)
    )
    assert inertia == pytest.approx(expected)


def test_kmeans_with_more_clusters_than_modes_splits_no_point_twice():
    points = np.repeat(np.eye(4), 5, axis=0)
    centroids, assignment, inertia = make_shape_priors.kmeans(points, 4, seed=0)
    assert inertia == pytest.approx(0.0)
    np.testing.assert_allclose(np.sort(centroids, axis=0), np.sort(np.eye(4), axis=0))
    with pytest.raises(ValueError, match="num_clusters"):
        make_shape_priors.kmeans(points, 21)


def test_cluster_priors_edge_cases():
    masks = _templates()[:2].astype(np.float32)
    repeated = make_shape_priors.cluster_priors(masks, 5)
    np.testing.assert_array_equal(repeated, masks[[0, 1, 0, 1, 0]])
    empty = make_shape_priors.cluster_priors(np.zeros((0, SIZE, SIZE)), 3)
    assert empty.shape == (3, SIZE, SIZE) and not empty.any()


def _run(capsys, *argv):
    code = make_shape_priors.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_priors_of_the_shapes_dataset(tiny_shapes, tmp_path, capsys):
    out = tmp_path / "priors.npy"
    code, stdout, stderr = _run(
        capsys,
        f"--file_pattern={tiny_shapes['train_file_pattern']}",
        f"--output_path={out}",
        "--num_classes=4",
        "--num_clusters=3",
        f"--prior_size={SIZE}",
    )
    assert code == 0, stderr
    assert "priors [4, 3, 16, 16]" in stdout
    priors = np.load(out)
    assert priors.shape == (4, 3, SIZE, SIZE) and priors.dtype == np.float32
    assert np.all((priors >= 0) & (priors <= 1))
    assert not priors[0].any()  # background: no masks, no prior
    circles, squares, triangles = priors[1], priors[2], priors[3]
    # A square fills its box: its priors are (nearly) all ones, up to occlusions.
    assert squares.mean() > 0.85
    # A circle fills its centre (but for a cluster of occluded ones), not its box corners.
    assert np.sum(circles[:, 6:10, 6:10].min(axis=(1, 2)) > 0.9) >= 2
    assert circles[:, 0, 0].max() < 0.3 and circles[:, -1, -1].max() < 0.3
    # A triangle fills about half its box.
    assert 0.35 < triangles.mean() < 0.65

    agnostic = tmp_path / "agnostic.npy"
    code, stdout, stderr = _run(
        capsys,
        f"--file_pattern={tiny_shapes['train_file_pattern']}",
        f"--output_path={agnostic}",
        "--num_classes=4",
        "--num_clusters=3",
        f"--prior_size={SIZE}",
        "--class_agnostic",
        "--classes=1,2",
    )
    assert code == 0, stderr
    assert np.load(agnostic).shape == (1, 3, SIZE, SIZE)

    split = tmp_path / "split.npy"
    code, _, stderr = _run(
        capsys,
        f"--file_pattern={tiny_shapes['train_file_pattern']}",
        f"--output_path={split}",
        "--num_classes=4",
        "--num_clusters=3",
        f"--prior_size={SIZE}",
        "--classes=1,2",
    )
    assert code == 0, stderr
    held_out = np.load(split)
    assert held_out[1:3].any() and not held_out[3].any()  # triangles never seen


def _record_without_masks(path):
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": tf.train.Feature(
                    bytes_list=tf.train.BytesList(
                        value=[tf.io.encode_jpeg(tf.zeros([8, 8, 3], tf.uint8)).numpy()]
                    )
                ),
                "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[8])),
                "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[8])),
                "image/object/bbox/ymin": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[0.1])
                ),
                "image/object/bbox/xmin": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[0.1])
                ),
                "image/object/bbox/ymax": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[0.9])
                ),
                "image/object/bbox/xmax": tf.train.Feature(
                    float_list=tf.train.FloatList(value=[0.9])
                ),
                "image/object/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[1])
                ),
            }
        )
    )
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(example.SerializeToString())


def test_bad_input_exits_2_with_one_line(tiny_shapes, tmp_path, capsys):
    out = f"--output_path={tmp_path / 'p.npy'}"
    records = f"--file_pattern={tiny_shapes['train_file_pattern']}"
    garbage = tmp_path / "garbage.tfrecord"
    garbage.write_bytes(b"not a tfrecord at all")
    no_masks = tmp_path / "no_masks.tfrecord"
    _record_without_masks(no_masks)
    cases = [
        ((f"--file_pattern={tmp_path}/none-*", out), "matches no file"),
        ((records, out, "--num_clusters=0"), "--num_clusters must be >= 1"),
        ((records, out, "--classes=dogs"), "--classes='dogs'"),
        ((records, out, "--num_classes=2"), "class id 2 is outside [0, --num_classes=2)"),
        ((records, out, "--classes=7", "--num_classes=8"), "no instance mask"),
        ((f"--file_pattern={garbage}", out), "garbage.tfrecord: not a readable TFRecord"),
        ((f"--file_pattern={no_masks}", out), "1 instances but 0 masks"),
        ((records,), "--output_path"),
        ((records, f"--output_path={tmp_path}/missing/dir/p.npy", "--num_classes=4"), "missing"),
    ]
    for argv, expected in cases:
        code, stdout, stderr = _run(capsys, *argv)
        assert code == 2, (argv, stderr)
        assert stdout == ""
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (argv, stderr)
        assert lines[0].startswith("make_shape_priors: error:")
