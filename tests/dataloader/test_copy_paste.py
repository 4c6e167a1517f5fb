"""Copy-paste: known objects pasted onto a known image (pixels, occluded masks and boxes,
removal of covered objects, room for the pasted ones), through the parsers, and in tf.data."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf
import yaml

from detection.configs import factory as config_factory
from detection.configs import loader
from detection.dataloader import factory, preprocess_ops
from detection.dataloader.base_parser import Instances
from detection.dataloader.copy_paste import CopyPaste
from detection.dataloader.extract_objects_parser import ExtractObjectsParser
from detection.dataloader.maskrcnn_parser import MaskRCNNParser
from detection.hyperparameters import ParamsError
from detection.ops.anchors import Anchors

import detection_examples as examples

SIZE = 64
CROP = 8
REFERENCE_CONFIG = (
    pathlib.Path(__file__).resolve().parents[1]
    / "data"
    / "copy_paste"
    / "maskrcnn_resnet50_1024_copy_paste.yaml"
)


def _identity_info(size=SIZE):
    return tf.constant([[size, size], [size, size], [1, 1], [0, 0]], tf.float32)


def _instances(boxes, image_value, image_info, original_size):
    """Instances whose masks fill their (integer, original-pixel) boxes."""
    masks = np.stack([examples.rectangle_mask(original_size, original_size, b) for b in boxes])
    scale = float(image_info[2, 0])
    return Instances(
        image=tf.fill([SIZE, SIZE, 3], image_value),
        image_info=image_info,
        boxes=tf.constant(boxes, tf.float32) * scale,
        classes=tf.range(1, len(boxes) + 1, dtype=tf.int32),
        masks=tf.constant(masks, tf.float32),
        original_boxes=tf.constant(boxes, tf.float32),
    )


def _objects(boxes, classes, image_value, max_instances=10):
    """Objects to paste that fill their network-input boxes; index map as the pre-parser's."""
    index = -np.ones([SIZE, SIZE], np.int32)
    for k in reversed(range(len(boxes))):  # lower index wins overlaps
        b = boxes[k]
        index[b[0] : b[2], b[1] : b[3]] = k
    n = len(boxes)
    padded_boxes = -np.ones([max_instances, 4], np.float32)
    padded_boxes[:n] = boxes
    crops = -np.ones([max_instances, CROP, CROP], np.float32)
    crops[:n] = np.arange(n)[:, None, None] / 10.0  # tells the crops apart
    return {
        "image": tf.fill([SIZE, SIZE, 3], image_value),
        "object_index": tf.constant(index),
        "boxes": tf.constant(padded_boxes),
        "classes": tf.constant(list(classes) + [-1] * (max_instances - n), tf.int32),
        "masks": tf.constant(crops),
        "num_objects": tf.constant(n, tf.int32),
    }


# Training objects: 1 is partly covered (its box keeps its extent), 2 fully covered, 3 loses
# its left 12 px (its box shrinks). Pasted: P0 over 1's lower-left quarter, P1 over 3's left
# part, P2 over all of 2.
OWN = [(10, 10, 30, 30), (40, 40, 50, 50), (5, 40, 25, 60)]
PASTED = [(20, 0, 36, 20), (0, 36, 30, 52), (38, 38, 54, 54)]


def test_paste_updates_pixels_masks_boxes_and_removes_covered_objects():
    instances = _instances(OWN, 1.0, _identity_info(), SIZE)
    objects = _objects(PASTED, [5, 6, 7], 2.0)
    out = CopyPaste(max_num_instances=10, occluded_area_threshold=100)(instances, objects)

    pasted = np.zeros([SIZE, SIZE], bool)
    for b in PASTED:
        pasted[b[0] : b[2], b[1] : b[3]] = True
    np.testing.assert_array_equal(out.image.numpy()[..., 0], np.where(pasted, 2.0, 1.0))
    # Object 2 is gone; 1 keeps its box (its visible pixels still span it), 3 starts at x=52.
    assert out.classes.numpy().tolist() == [1, 3, 5, 6, 7]
    np.testing.assert_allclose(
        out.boxes.numpy(), [OWN[0], (5, 52, 25, 60)] + [list(b) for b in PASTED]
    )
    np.testing.assert_allclose(out.original_boxes.numpy(), out.boxes.numpy())
    expected_masks = [
        examples.rectangle_mask(SIZE, SIZE, OWN[0]) * ~pasted,
        examples.rectangle_mask(SIZE, SIZE, (5, 52, 25, 60)),
    ]
    np.testing.assert_array_equal(out.masks.numpy(), expected_masks)
    np.testing.assert_array_equal(out.pasted_mask_crops.numpy(), objects["masks"].numpy()[:3])


def test_occluded_object_below_the_area_threshold_is_removed():
    # Object 3 keeps 20 x 8 = 160 visible pixels with a moved edge: removed at 300 px^2.
    out = CopyPaste(max_num_instances=10)(
        _instances(OWN, 1.0, _identity_info(), SIZE), _objects(PASTED, [5, 6, 7], 2.0)
    )
    assert out.classes.numpy().tolist() == [1, 5, 6, 7]


def test_objects_beyond_max_num_instances_are_neither_pasted_nor_labelled():
    out = CopyPaste(max_num_instances=4)(
        _instances(OWN, 1.0, _identity_info(), SIZE), _objects(PASTED, [5, 6, 7], 2.0)
    )
    expected = np.ones([SIZE, SIZE])
    expected[20:36, 0:20] = 2.0  # only P0 fits
    np.testing.assert_array_equal(out.image.numpy()[..., 0], expected)
    assert out.classes.numpy().tolist() == [1, 2, 3, 5]
    np.testing.assert_allclose(out.boxes.numpy(), OWN + [PASTED[0]])
    assert out.pasted_mask_crops.shape[0] == 1


def test_a_pasted_object_without_pixels_is_not_labelled():
    # P1 lies entirely under P0 (the lower index wins overlaps): it shows no pixel.
    out = CopyPaste(max_num_instances=10)(
        _instances(OWN[:1], 1.0, _identity_info(), SIZE),
        _objects([(40, 0, 60, 30), (45, 5, 55, 25), (0, 50, 10, 60)], [5, 6, 7], 2.0),
    )
    assert out.classes.numpy().tolist() == [1, 5, 7]
    np.testing.assert_allclose(out.boxes.numpy(), [OWN[0], (40, 0, 60, 30), (0, 50, 10, 60)])
    np.testing.assert_allclose(out.pasted_mask_crops.numpy()[:, 0, 0], [0.0, 0.2])


def test_occlusion_is_mapped_to_the_original_resolution():
    # A 32 px original scaled x2 into the 64 px input: the paste covering network rows 0-20
    # covers original rows 0-10, the top half of the object (original rows 5-15).
    info = tf.constant([[32, 32], [64, 64], [2, 2], [0, 0]], tf.float32)
    instances = _instances([(5, 5, 15, 15)], 1.0, info, 32)
    out = CopyPaste(max_num_instances=4, box_update_threshold=2, occluded_area_threshold=10)(
        instances, _objects([(0, 0, 20, 40)], [5], 2.0)
    )
    np.testing.assert_allclose(out.boxes.numpy(), [(20, 10, 30, 30), (0, 0, 20, 40)])
    np.testing.assert_allclose(out.original_boxes.numpy()[0], (10, 5, 15, 15))
    np.testing.assert_array_equal(
        out.masks.numpy()[0], examples.rectangle_mask(32, 32, (10, 5, 15, 15))
    )


# --- Resampling maps with the image geometry (independent references) ---


def test_masks_to_network_input_matches_a_nearest_resize_crop_and_pad():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, [2, 37, 50]).astype(np.int32)
    tf.random.set_seed(4)
    for _ in range(5):
        _, info = preprocess_ops.resize_and_crop_image(
            tf.zeros([37, 50, 3]), [SIZE, SIZE], 0.5, 2.0
        )
        scaled = tf.cast(tf.round(info[0] * info[2]), tf.int32).numpy()
        offset = info[3].numpy().astype(int)
        resized = tf.image.resize(np.moveaxis(ids, 0, -1), scaled, "nearest").numpy()
        expected = np.full([SIZE, SIZE, 2], -1, np.int32)
        crop = resized[offset[0] : offset[0] + SIZE, offset[1] : offset[1] + SIZE]
        expected[: crop.shape[0], : crop.shape[1]] = crop
        got = preprocess_ops.masks_to_network_input(ids, info, [SIZE, SIZE], fill_value=-1)
        np.testing.assert_array_equal(got.numpy(), np.moveaxis(expected, -1, 0))


def test_masks_to_original_pixels_takes_the_pixel_under_each_centre():
    rng = np.random.default_rng(1)
    network = rng.integers(0, 9, [SIZE, SIZE]).astype(np.int32)
    info = np.array([[40, 30], [SIZE, 45], [1.7, 1.5], [3, 0]], np.float32)
    got = preprocess_ops.masks_to_original_pixels(network, tf.constant(info), fill_value=-1).numpy()
    assert got.shape == (40, 30)
    for y in range(40):
        for x in range(30):
            row = int(np.floor((y + 0.5) * info[2, 0] - info[3, 0]))
            col = int(np.floor((x + 0.5) * info[2, 1] - info[3, 1]))
            inside = 0 <= row < SIZE and 0 <= col < SIZE
            assert got[y, x] == (network[row, col] if inside else -1), (y, x)


# --- Through the parsers: a known object from a second record pasted onto a known image ---


def _parser_args():
    return dict(
        output_size=[SIZE, SIZE],
        num_classes=4,
        aug_rand_hflip=False,
        max_num_instances=6,
    )


def test_extract_objects_parser_outputs_static_objects_and_their_index_map():
    image = np.zeros([SIZE, SIZE, 3], np.uint8)
    boxes = [(4, 4, 20, 20), (10, 30, 40, 60)]
    masks = [examples.rectangle_mask(SIZE, SIZE, b) for b in boxes]
    record = examples.encode_example(image, boxes, [1, 3], np.stack(masks))
    parser = ExtractObjectsParser(mask_crop_size=CROP, seed=5, **_parser_args())
    counts = set()
    for _ in range(12):
        objects = parser(record)
        m = int(objects["num_objects"])
        counts.add(m)
        assert objects["boxes"].shape == (6, 4) and objects["masks"].shape == (6, CROP, CROP)
        chosen = objects["classes"].numpy()[:m]
        expected_index = -np.ones([SIZE, SIZE], np.int32)
        for k, cls in enumerate(chosen):
            box = boxes[[1, 3].index(cls)]
            np.testing.assert_allclose(objects["boxes"][k], box)
            expected_index[box[0] : box[2], box[1] : box[3]] = k
        np.testing.assert_array_equal(objects["object_index"], expected_index)
        np.testing.assert_allclose(objects["masks"][:m], 1.0)
        assert np.all(objects["classes"].numpy()[m:] == -1)
    assert counts == {1, 2}  # m uniform in [1, n]


def test_maskrcnn_parser_pastes_a_known_object_onto_a_known_image():
    main_image = np.full([SIZE, SIZE, 3], 30, np.uint8)
    own = [(8, 8, 24, 24), (40, 40, 48, 48)]
    main_image[8:24, 8:24] = (200, 0, 0)
    main_image[40:48, 40:48] = (0, 200, 0)
    main = examples.encode_example(
        main_image, own, [1, 2], np.stack([examples.rectangle_mask(SIZE, SIZE, b) for b in own])
    )
    # The second image's object (class 3, blue) covers object 2 and half of object 1.
    second_image = np.full([SIZE, SIZE, 3], 90, np.uint8)
    pasted_box = (16, 0, 56, 56)
    second_image[16:56, 0:56] = (0, 0, 250)
    second = examples.encode_example(
        second_image,
        [pasted_box],
        [3],
        examples.rectangle_mask(SIZE, SIZE, pasted_box)[None],
        source_id=2,
    )
    extract = ExtractObjectsParser(mask_crop_size=CROP, **_parser_args())
    parser = MaskRCNNParser(
        anchors=Anchors(2, 4, 1, [1.0], 8, [SIZE, SIZE]),
        rpn_batch_size_per_im=32,
        mask_crop_size=CROP,
        is_training=True,
        copy_paste=CopyPaste(
            max_num_instances=6, box_update_threshold=2, occluded_area_threshold=20
        ),
        **_parser_args(),
    )
    features, labels = parser(main, extract(second))

    expected_image = main_image.copy()
    expected_image[16:56, 0:56] = (0, 0, 250)
    np.testing.assert_allclose(
        features["images"], preprocess_ops.normalize_image(expected_image), atol=1e-5
    )
    # Object 1 keeps its top half (rows 8-16), object 2 is gone, the pasted object follows.
    assert labels["gt_classes"].numpy().tolist() == [1, 3, -1, -1, -1, -1]
    np.testing.assert_allclose(labels["gt_boxes"][:2], [(8, 8, 16, 24), pasted_box])
    np.testing.assert_allclose(labels["gt_masks"][:2], 1.0)  # both fill their boxes
    assert np.all(labels["gt_masks"][2:].numpy() == -1)
    positives = sum(int(np.sum(labels["rpn_score_targets"][l] == 1)) for l in "234")
    assert positives > 0


# --- The params and the input pipeline ---


def _params(paths, **overrides):
    params = config_factory.config_generator("mask_rcnn")
    params.override(
        {
            "architecture": {
                "num_classes": 4,
                "min_level": 2,
                "max_level": 4,
                "pre_parser": "extract_objects_parser",
            },
            "train": {
                "train_file_pattern": paths["train_file_pattern"],
                "train_batch_size": 2,
                "pre_parser_dataset": {"file_pattern": paths["train_file_pattern"]},
            },
            "rpn_score_loss": {"rpn_batch_size_per_im": 32},
            "maskrcnn_parser": {
                "output_size": [SIZE, SIZE],
                "aug_scale_min": 0.5,
                "aug_scale_max": 2.0,
                "mask_crop_size": CROP,
                "rpn_batch_size_per_im": 32,
                "max_num_instances": 10,
                "copy_paste": True,
            },
        }
    )
    params.override(overrides)
    return params


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"architecture": {"pre_parser": None}},
            "maskrcnn_parser.copy_paste=True needs architecture.pre_parser",
        ),
        (
            {"maskrcnn_parser": {"copy_paste": False}},
            "architecture.pre_parser='extract_objects_parser' feeds copy-paste",
        ),
        (
            {"architecture": {"pre_parser": "mosaic_parser"}},
            "architecture.pre_parser='mosaic_parser' is not implemented; available: extract_objects_parser",
        ),
        (
            {"train": {"pre_parser_dataset": {"file_pattern": ""}}},
            "train.pre_parser_dataset.file_pattern is empty",
        ),
    ],
)
def test_inconsistent_copy_paste_params_name_the_keys(tiny_shapes, overrides, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(".", r"\.")):
        factory.input_fn_from_params(_params(tiny_shapes, **overrides), "train")


def test_pre_parser_with_retinanet_is_an_error():
    params = config_factory.config_generator("retinanet")
    params.override({"architecture": {"pre_parser": "extract_objects_parser"}})
    with pytest.raises(ParamsError, match="architecture.parser='retinanet_parser' does not"):
        factory.parser_from_params(params, "eval")


def test_copy_paste_pipeline_keeps_static_shapes_and_valid_labels(tiny_shapes):
    dataset = factory.input_fn_from_params(_params(tiny_shapes), "train", deterministic=True)()
    specs = tf.nest.flatten(dataset.element_spec)
    assert all(spec.shape.is_fully_defined() for spec in specs), dataset.element_spec
    plain = factory.input_fn_from_params(
        _params(
            tiny_shapes, maskrcnn_parser={"copy_paste": False}, architecture={"pre_parser": None}
        ),
        "train",
        deterministic=True,
    )()
    assert dataset.element_spec == plain.element_spec
    counts = []
    for features, labels in dataset.take(6):
        assert np.all(np.isfinite(features["images"].numpy()))
        classes, boxes = labels["gt_classes"].numpy(), labels["gt_boxes"].numpy()
        masks = labels["gt_masks"].numpy()
        valid = classes >= 0
        assert np.all((classes[valid] >= 1) & (classes[valid] <= 3))
        assert np.all(boxes[~valid] == -1) and np.all(masks[~valid] == -1)
        assert np.all(boxes[valid] >= 0) and np.all(boxes[valid] <= SIZE)
        assert np.all(boxes[valid][:, 2:] > boxes[valid][:, :2])
        assert np.all((masks[valid] >= 0) & (masks[valid] <= 1))
        counts.extend(valid.sum(1).tolist())
    # Shapes scenes hold 1-4 objects; a paste adds at least one whenever one is visible.
    assert max(counts) > 4


def test_the_reference_copy_paste_config_builds_its_input_pipeline(tiny_shapes, tmp_path):
    config = yaml.safe_load(REFERENCE_CONFIG.read_text())
    # The file trains a cascade; the input pipeline is the same for both model types.
    del config["type"]
    path = tmp_path / "copy_paste.yaml"
    path.write_text(yaml.safe_dump(config))
    params = loader.load_params(
        "mask_rcnn",
        [str(path)],
        extra_overrides={
            "architecture": {"num_classes": 4, "min_level": 2, "max_level": 4},
            "train": {
                "train_file_pattern": tiny_shapes["train_file_pattern"],
                "train_batch_size": 2,
                "pre_parser_dataset": {"file_pattern": tiny_shapes["train_file_pattern"]},
            },
            "maskrcnn_parser": {"output_size": [SIZE, SIZE], "mask_crop_size": CROP},
        },
    )
    assert params.maskrcnn_parser.copy_paste and params.maskrcnn_parser.aug_scale_min == 0.1
    features, labels = next(iter(factory.input_fn_from_params(params, "train")()))
    assert features["images"].shape == (2, SIZE, SIZE, 3)
    assert labels["gt_masks"].shape == (2, 100, CROP, CROP)
