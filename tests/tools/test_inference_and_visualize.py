"""Drawing detections, image grids, label maps, and the inference tool (Detector and main())
on a tiny RetinaNet trained for 2 steps in-process."""

import glob
import json
import os

import keras
import numpy as np
import numpy_references as references
import pytest
import tensorflow as tf
import yaml
from PIL import Image

from detection.configs import loader
from detection.core.modes import PREDICT
from detection.dataloader import preprocess_ops
from detection.executor import checkpoints, runner
from detection.model_fns import factory as model_fn_factory
from detection.tools import inference, visualize

GRAY = 128

TINY_CONFIG = {
    "type": "retinanet",
    "architecture": {"min_level": 3, "max_level": 5, "num_classes": 4, "use_bfloat16": False},
    "resnet": {"resnet_depth": 10},
    "fpn": {"fpn_feat_dims": 16},
    "retinanet_head": {"num_convs": 1, "num_filters": 16},
    "anchor": {"num_scales": 2, "anchor_size": 3.0},
    "retinanet_parser": {"output_size": [64, 64], "max_num_instances": 8},
    "train": {"train_batch_size": 2, "total_steps": 2, "iterations_per_loop": 2},
    # Threshold 0: a 2-step model scores everything near the 0.01 prior, and every image
    # should still give K detections to draw and map.
    "postprocess": {"max_total_size": 10, "pre_nms_num_boxes": 50, "score_threshold": 0.0},
}


# ---------------------------------------------------------------- visualize


def _gray(height=64, width=64):
    return np.full((height, width, 3), GRAY, np.uint8)


def _changed(before, after):
    return np.any(before != after, axis=-1)


def test_draw_detections_changes_only_box_edges_and_label():
    image = _gray()
    original = image.copy()
    ymin, xmin, ymax, xmax = 20, 10, 50, 40
    boxes = np.array([[ymin, xmin, ymax, xmax], [52, 50, 62, 62]], np.float32)
    drawn = visualize.draw_detections(
        image,
        boxes,
        np.array([1, 2]),
        np.array([0.9, 0.1]),
        {1: "circle"},
        min_score=0.3,
        line_width=2,
    )
    np.testing.assert_array_equal(image, original)  # The input is not drawn on.
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    changed = _changed(original, drawn)
    # The outline: every pixel of the four edges.
    assert changed[ymin, xmin : xmax + 1].all() and changed[ymax, xmin : xmax + 1].all()
    assert changed[ymin : ymax + 1, xmin].all() and changed[ymin : ymax + 1, xmax].all()
    # Inside, beyond the 2-pixel line: untouched.
    assert not changed[ymin + 3 : ymax - 2, xmin + 3 : xmax - 2].any()
    # Outside the box: only the label, a strip just above the box starting at its left edge.
    outside = changed.copy()
    outside[ymin : ymax + 1, xmin : xmax + 1] = False
    rows, cols = np.nonzero(outside)
    assert rows.size > 20, "the label is drawn"
    assert rows.min() >= ymin - 16 and rows.max() <= ymin
    assert cols.min() >= xmin
    # The detection below min_score is not drawn at all.
    assert not changed[50:, 48:].any()

    # Another name gives another label, the same outline.
    numbered = visualize.draw_detections(image, boxes[:1], [1], [0.9], None, min_score=0.3)
    label_rows = slice(ymin - 16, ymin)
    assert not np.array_equal(numbered[label_rows], drawn[label_rows])
    np.testing.assert_array_equal(numbered[ymin + 1 :], drawn[ymin + 1 :])


def test_label_goes_inside_a_box_at_the_top_edge():
    image = _gray()
    drawn = visualize.draw_detections(image, [[1, 5, 40, 60]], [3], [0.5], min_score=0.5)
    changed = _changed(image, drawn)
    assert not changed[41:].any() and not changed[:, 61:].any()
    # No room above: the label sits inside the box, under its top edge.
    interior = changed[4:38, 8:58]
    rows = np.nonzero(interior.any(axis=1))[0] + 4
    assert rows.size and rows.max() < 1 + 16


def test_image_grid_places_images_on_background():
    images = [
        np.full((10, 20, 3), 1, np.uint8),
        np.full((15, 5, 3), 2, np.uint8),
        np.full((8, 8, 3), 3, np.uint8),
    ]
    grid = visualize.image_grid(images, columns=2, pad=4)
    # Cells are 15 x 20 (the largest), 2 columns x 2 rows, 4-pixel padding around each.
    assert grid.shape == (4 + 2 * (15 + 4), 4 + 2 * (20 + 4), 3)
    expected = np.full(grid.shape, 255, np.uint8)
    expected[4:14, 4:24] = 1
    expected[4:19, 28:33] = 2
    expected[23:31, 4:12] = 3
    np.testing.assert_array_equal(grid, expected)
    with pytest.raises(ValueError, match="at least one image"):
        visualize.image_grid([], columns=2)


def test_load_category_names_json_and_csv(tiny_shapes, tmp_path):
    assert visualize.load_category_names(tiny_shapes["val_annotations"]) == {
        1: "circle",
        2: "square",
        3: "triangle",
    }
    path = tmp_path / "labels.csv"
    path.write_text("id,name\n1, circle\n\n2,square \n17,traffic light\n")
    assert visualize.load_category_names(str(path)) == {
        1: "circle",
        2: "square",
        17: "traffic light",
    }


# ---------------------------------------------------------------- inference


@pytest.fixture(scope="module")
def trained(tiny_shapes, tmp_path_factory):
    """A model_dir trained for 2 steps in this process, and the config to rebuild it."""
    root = tmp_path_factory.mktemp("inference")
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(TINY_CONFIG))
    override = json.dumps({"train": {"train_file_pattern": tiny_shapes["train_file_pattern"]}})
    params = loader.load_params(None, [str(config_file)], override)
    model_dir = str(root / "run")
    runner.run(
        "train",
        model_fn=model_fn_factory.model_fn_from_params(params),
        params=params,
        model_dir=model_dir,
        strategy=tf.distribute.OneDeviceStrategy("/cpu:0"),
    )
    return {
        "config_file": str(config_file),
        "override": override,
        "params": params,
        "model_dir": model_dir,
    }


@pytest.fixture(scope="module")
def detector(trained):
    return inference.Detector(trained["params"], trained["model_dir"])


def _val_image(tiny_shapes, index=0):
    files = sorted(glob.glob(os.path.join(tiny_shapes["val_image_dir"], "*")))
    return inference.read_image(files[index])


def test_detector_maps_boxes_back_to_original_pixels(tiny_shapes, trained, detector):
    assert detector.checkpoint_path.endswith("ckpt-2")
    # A non-square 96 x 48 image: scale 2/3 to 64 x 32, padded on the right to 64 x 64.
    image = np.asarray(Image.fromarray(_val_image(tiny_shapes)).resize((48, 96)))
    images, image_info = detector.preprocess(image)
    np.testing.assert_allclose(
        image_info[0], [[96, 48], [64, 32], [2 / 3, 2 / 3], [0, 0]], rtol=1e-6
    )
    normalized = (image.astype(np.float32) - preprocess_ops.MEAN_RGB) / preprocess_ops.STDDEV_RGB
    expected = np.zeros([64, 64, 3], np.float32)
    expected[:, :32] = tf.image.resize(normalized, [64, 32]).numpy()
    np.testing.assert_allclose(images[0], expected, atol=1e-5)

    # The model fn on that input, boxes mapped by hand: input pixels / scale.
    model_fn = model_fn_factory.model_fn_from_params(trained["params"])
    model = model_fn.build_model()
    checkpoints.restore_model(model, detector.checkpoint_path)
    features = {"images": images, "image_info": image_info, "source_ids": tf.zeros([1], tf.int64)}
    predictions = model_fn(model, features, None, PREDICT)["predictions"]
    count = int(predictions["num_detections"][0])
    assert count == 10
    by_hand = predictions["detection_boxes"][0, :count].numpy() / (2 / 3)

    result = detector(image)
    assert result["boxes"].shape == (count, 4)
    np.testing.assert_allclose(result["boxes"], by_hand, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        result["scores"], predictions["detection_scores"][0, :count], atol=1e-5
    )
    np.testing.assert_array_equal(result["classes"], predictions["detection_classes"][0, :count])
    # Within the original image, which is taller than the network input.
    assert np.all(result["boxes"] >= 0)
    assert np.all(result["boxes"][:, [0, 2]] <= 96 + 1e-3)
    assert np.all(result["boxes"][:, [1, 3]] <= 48 + 1e-3)


def test_detector_on_a_2x_upscaled_image_returns_2x_boxes(tiny_shapes, detector):
    image = _val_image(tiny_shapes, 1)
    upscaled = np.kron(image, np.ones((2, 2, 1), np.uint8))  # Nearest-neighbour 2x.
    # Bilinear 2x downscaling of a pixel-duplicated image gives the original pixels back, so
    # the network sees the same input and only the mapping differs.
    small, large = detector(image), detector(upscaled)
    np.testing.assert_allclose(large["scores"], small["scores"], atol=1e-6)
    np.testing.assert_array_equal(large["classes"], small["classes"])
    np.testing.assert_allclose(large["boxes"], 2 * small["boxes"], atol=1e-3)
    assert len(small["boxes"]) == 10


def test_inference_main_writes_one_png_per_image(tiny_shapes, trained, detector, tmp_path, capsys):
    pattern = os.path.join(tiny_shapes["val_image_dir"], "*.jpg")
    files = sorted(glob.glob(pattern))[:4]
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for path in files:
        os.symlink(path, image_dir / os.path.basename(path))
    results = [detector(inference.read_image(path)) for path in files]
    # A threshold inside the score range, so the printed counts are not all 0 or all 10.
    min_score = float(np.median(np.concatenate([r["scores"] for r in results])))
    out_dir = tmp_path / "out"
    code = inference.main(
        [
            f"--config_file={trained['config_file']}",
            f"--params_override={trained['override']}",
            f"--model_dir={trained['model_dir']}",
            f"--image_file_pattern={image_dir}/*.jpg",
            f"--label_map_file={tiny_shapes['val_annotations']}",
            f"--output_dir={out_dir}",
            f"--min_score={min_score}",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()[-len(files) :]
    names = visualize.load_category_names(tiny_shapes["val_annotations"])
    counts = []
    for path, result, line in zip(files, results, lines):
        base = os.path.splitext(os.path.basename(path))[0]
        out = out_dir / f"{base}.png"
        count = int(np.sum(result["scores"] >= min_score))
        counts.append(count)
        assert line == f"{image_dir}/{os.path.basename(path)}: {count} detections -> {out}"
        image = inference.read_image(path)
        written = np.asarray(Image.open(out))
        expected = visualize.draw_detections(
            image, result["boxes"], result["classes"], result["scores"], names, min_score
        )
        np.testing.assert_array_equal(written, expected)
        assert (count == 0) == np.array_equal(written, image)
    assert sorted(os.listdir(out_dir)) == sorted(
        os.path.splitext(os.path.basename(p))[0] + ".png" for p in files
    )
    assert 0 < sum(counts) < 10 * len(files)


def test_inference_main_bad_inputs_exit_2_with_one_line(trained, tmp_path, capsys):
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    image = tmp_path / "a.jpg"
    Image.fromarray(_gray()).save(image)
    missing_checkpoint = tmp_path / "run" / "ckpt-7"
    cases = [
        (trained["model_dir"], tmp_path / "*.png", f"no file matches {tmp_path}/*.png"),
        (empty_dir, image, f"no checkpoint found in {empty_dir}"),
        (
            missing_checkpoint,
            image,
            f"{missing_checkpoint} is neither a directory nor a "
            f"checkpoint ({missing_checkpoint}.index does not exist)",
        ),
    ]
    for model_dir, pattern, message in cases:
        code = inference.main(
            [
                f"--config_file={trained['config_file']}",
                f"--model_dir={model_dir}",
                f"--image_file_pattern={pattern}",
                f"--output_dir={tmp_path / 'out'}",
            ]
        )
        assert code == 2
        assert capsys.readouterr().err.strip() == f"inference: error: {message}"
    assert not (tmp_path / "out").exists()


def test_label_at_the_right_border_is_shifted_inside_the_image():
    image = np.zeros((64, 64, 3), np.uint8)
    box = np.array([[30.0, 52.0, 60.0, 63.0]])
    drawn = visualize.draw_detections(
        image, box, np.array([1]), np.array([0.9]), {1: "circle"}, min_score=0.0
    )
    changed = np.any(drawn != image, axis=-1)
    # The label strip above the box starts left of the box, so the whole text is visible.
    assert changed[:30, :52].any()
    assert changed[:30, 60:].any()


# ---------------------------------------------------------------- masks


def test_blend_masks_tints_only_mask_pixels():
    image = _gray(8, 8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 3:7] = 1
    blended = visualize.blend_masks(image, mask[np.newaxis], np.array([2]), alpha=0.5)
    color = np.array(visualize._color(2), np.float64)
    expected = np.round(0.5 * GRAY + 0.5 * color).astype(np.uint8)
    np.testing.assert_array_equal(blended[2:5, 3:7], np.broadcast_to(expected, (3, 4, 3)))
    outside = np.ones((8, 8), bool)
    outside[2:5, 3:7] = False
    np.testing.assert_array_equal(blended[outside], image[outside])


def test_draw_detections_with_masks_skips_low_scores():
    image = _gray()
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 25:45, 15:35] = 1
    masks[1, 52:60, 52:60] = 1
    boxes = np.array([[20, 10, 50, 40], [52, 50, 62, 62]], np.float32)
    drawn = visualize.draw_detections(
        image, boxes, np.array([1, 2]), np.array([0.9, 0.1]), min_score=0.3, masks=masks
    )
    without = visualize.draw_detections(
        image, boxes, np.array([1, 2]), np.array([0.9, 0.1]), min_score=0.3
    )
    changed = _changed(without, drawn)
    # The kept detection's mask interior is tinted (its edges may carry the box outline).
    assert changed[28:42, 18:32].all()
    assert not changed[~masks[0].astype(bool)].any()


MRCNN_CONFIG = {
    "type": "mask_rcnn",
    "architecture": {
        "min_level": 2,
        "max_level": 4,
        "num_classes": 4,
        "use_bfloat16": False,
        "mask_target_size": 8,
    },
    "resnet": {"resnet_depth": 10},
    "fpn": {"fpn_feat_dims": 16},
    "rpn_head": {"num_filters": 16},
    "frcnn_head": {"fc_dims": 32},
    "mrcnn_head": {"num_convs": 1, "num_filters": 8},
    "maskrcnn_parser": {"output_size": [64, 64], "max_num_instances": 8, "mask_crop_size": 16},
    "roi_proposal": {"rpn_post_nms_top_k": 32, "test_rpn_post_nms_top_k": 32},
    "roi_sampling": {"num_samples_per_image": 32},
    "mask_sampling": {"num_mask_samples_per_image": 8},
    "train": {"train_batch_size": 2, "total_steps": 1, "iterations_per_loop": 1},
    "postprocess": {"max_total_size": 5, "score_threshold": 0.0},
}


def test_mask_rcnn_detector_pastes_masks_into_the_original_image(tiny_shapes, tmp_path):
    config_file = tmp_path / "mrcnn.yaml"
    config_file.write_text(yaml.safe_dump(MRCNN_CONFIG))
    override = json.dumps({"train": {"train_file_pattern": tiny_shapes["train_file_pattern"]}})
    params = loader.load_params(None, [str(config_file)], override)
    model_dir = str(tmp_path / "run")
    runner.run(
        "train",
        model_fn=model_fn_factory.model_fn_from_params(params),
        params=params,
        model_dir=model_dir,
        strategy=tf.distribute.OneDeviceStrategy("/cpu:0"),
    )
    detector = inference.Detector(params, model_dir)
    # 96 x 48: network input scale 2/3, so masks are pasted over boxes in original pixels.
    image = np.asarray(Image.fromarray(_val_image(tiny_shapes)).resize((48, 96)))
    result = detector(image)
    assert len(result["boxes"]) == 5
    assert result["masks"].shape == (5, 96, 48) and result["masks"].dtype == np.uint8
    images, image_info = detector.preprocess(image)
    model_fn = model_fn_factory.model_fn_from_params(params)
    model = model_fn.build_model()
    checkpoints.restore_model(model, detector.checkpoint_path)
    features = {"images": images, "image_info": image_info, "source_ids": tf.zeros([1], tf.int64)}
    predictions = model_fn(model, features, None, PREDICT)["predictions"]
    for k in range(5):
        box = predictions["detection_boxes"][0, k].numpy() / (2 / 3)
        expected = references.paste_mask(predictions["detection_masks"][0, k].numpy(), box, 96, 48)
        # Pixel centres within float error of the 0.5 threshold may round either way.
        assert np.mean(result["masks"][k] != expected) < 0.01
    drawn = visualize.draw_detections(
        image,
        result["boxes"],
        result["classes"],
        result["scores"],
        min_score=0.0,
        masks=result["masks"],
    )
    assert drawn.shape == image.shape


SHAPEMASK_CONFIG = {
    "type": "shapemask",
    "architecture": {"min_level": 3, "max_level": 5, "num_classes": 4, "use_bfloat16": False},
    "resnet": {"resnet_depth": 10},
    "fpn": {"fpn_feat_dims": 16},
    "retinanet_head": {"num_convs": 1, "num_filters": 16},
    "anchor": {"num_scales": 2, "anchor_size": 3.0},
    "shapemask_parser": {
        "output_size": [64, 64],
        "max_num_instances": 8,
        "mask_crop_size": 8,
        "upsample_factor": 2,
        "mask_min_level": 3,
        "mask_max_level": 4,
    },
    "shapemask_head": {
        "mask_crop_size": 8,
        "upsample_factor": 2,
        "num_downsample_channels": 8,
        "num_convs": 1,
    },
    "postprocess": {"max_total_size": 5, "pre_nms_num_boxes": 50, "score_threshold": 0.0},
}


def test_shapemask_detector_pastes_masks_over_the_outer_boxes(tiny_shapes, tmp_path):
    params = loader.load_params(
        "shapemask", [], {k: v for k, v in SHAPEMASK_CONFIG.items() if k != "type"}
    )
    model_fn = model_fn_factory.model_fn_from_params(params)
    keras.utils.set_random_seed(0)
    model = model_fn.build_model()
    # An untrained fine head predicts empty masks, which any box pastes the same way: a large
    # bias makes every mask fill the box it spans, so the box it is pasted over shows.
    (bias,) = [
        v for v in model.variables if "fine_mask_head" in v.path and "predict/bias" in v.path
    ]
    bias.assign(tf.fill(bias.shape, 50.0))
    # The weights, saved as the checkpoint of a training run would be.
    path = tf.train.Checkpoint(model=checkpoints.model_variables(model)).save(
        str(tmp_path / "ckpt-0")
    )
    detector = inference.Detector(params, path)
    # 96 x 48: network input scale 2/3.
    image = np.asarray(Image.fromarray(_val_image(tiny_shapes)).resize((48, 96)))
    result = detector(image)
    assert result["masks"].shape == (5, 96, 48) and result["masks"].dtype == np.uint8
    images, image_info = detector.preprocess(image)
    features = {"images": images, "image_info": image_info, "source_ids": tf.zeros([1], tf.int64)}
    predictions = model_fn(model, features, None, PREDICT)["predictions"]
    over_outer, over_tight = 0.0, 0.0
    for k in range(5):
        mask = predictions["detection_masks"][0, k].numpy()
        outer = predictions["detection_outer_boxes"][0, k].numpy() / (2 / 3)
        tight = predictions["detection_boxes"][0, k].numpy() / (2 / 3)
        over_outer += np.mean(result["masks"][k] != references.paste_mask(mask, outer, 96, 48))
        over_tight += np.mean(result["masks"][k] != references.paste_mask(mask, tight, 96, 48))
    # Pixel centres within float error of the 0.5 threshold may round either way.
    assert over_outer / 5 < 0.01
    # ... and the test tells the two boxes apart: pasted over the tight box, masks differ.
    assert over_tight > over_outer + 0.01
