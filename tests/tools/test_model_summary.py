"""model_summary: exact parameter counts, hand-counted MACs, exit code 2 on bad input."""

import pytest
import tensorflow as tf

from detection.configs import loader
from detection.hyperparameters import ParamsError
from detection.modeling.networks import factory as network_factory
from detection.tools import model_summary

# ResNet-10, 16-channel FPN on P3-P7, one 16-filter conv per subnet, 3 classes, 128x128 input
# (the smallest divisible by 2**max_level).
TINY = (
    "{resnet: {resnet_depth: 10}, fpn: {fpn_feat_dims: 16}, "
    "retinanet_head: {num_convs: 1, num_filters: 16}, "
    "retinanet_parser: {output_size: [128, 128]}, architecture: {num_classes: 3}}"
)
A = 9  # 3 scales x 3 aspect ratios
K = 3  # classes, background included
F = 16  # FPN channels = head filters
# Level l (3..7) of a 128x128 input has side 128 / 2^l: 16, 8, 4, 2, 1.
SIDES = {3: 16, 4: 8, 5: 4, 6: 2, 7: 1}
PIXELS = sum(s * s for s in SIDES.values())  # 341


@pytest.fixture(scope="module")
def tiny_params():
    return loader.load_params("retinanet", params_override=TINY)


@pytest.fixture(scope="module")
def tiny_summary(tiny_params):
    return model_summary.summarize(tiny_params)


def _rows(summary):
    return {row.name: row for row in summary.components}


def test_total_params_equal_keras_count_of_independently_built_network(tiny_params, tiny_summary):
    network = network_factory.retinanet_network_from_params(tiny_params)
    network(tf.zeros([1, 128, 128, 3]), training=False)
    rows = _rows(tiny_summary)
    assert rows["total"].params == network.count_params()
    trainable = sum(int(tf.size(w)) for w in network.trainable_weights)
    assert rows["total"].trainable_params == trainable
    assert rows["total"].trainable_params < rows["total"].params  # BN moving stats


def test_components_sum_to_separately_counted_total(tiny_summary):
    rows = _rows(tiny_summary)
    assert [r.name for r in tiny_summary.components] == ["backbone", "fpn", "head", "total"]
    parts = [rows[name] for name in ("backbone", "fpn", "head")]
    for field in ("params", "trainable_params", "macs"):
        assert sum(getattr(p, field) for p in parts) == getattr(rows["total"], field), field
    assert all(p.macs > 0 and p.params > 0 for p in parts)
    assert tiny_summary.input_shape == (1, 128, 128, 3)


def test_head_counts_by_hand(tiny_summary):
    head = _rows(tiny_summary)["head"]
    conv3x3 = 9 * F  # products per output channel per pixel of a 3x3 conv on F channels
    # Per level: class conv (F out), class prediction (A*K out), box conv (F), box
    # prediction (A*4); the convolutions are shared across levels.
    assert head.macs == PIXELS * conv3x3 * (F + A * K + F + A * 4)
    weights = (conv3x3 * F + F) * 2 + (conv3x3 * A * K + A * K) + (conv3x3 * A * 4 + A * 4)
    # One batch norm per (subnet, conv, level): gamma, beta trainable; mean, var not.
    norms = 2 * 1 * len(SIDES) * F
    assert head.trainable_params == weights + 2 * norms
    assert head.params == weights + 4 * norms


def test_fpn_macs_by_hand(tiny_summary):
    # ResNet-10 (basic blocks) gives C3, C4, C5 with 128, 256, 512 channels.
    laterals = (SIDES[3] ** 2 * 128 + SIDES[4] ** 2 * 256 + SIDES[5] ** 2 * 512) * F
    outputs = (SIDES[3] ** 2 + SIDES[4] ** 2 + SIDES[5] ** 2) * 9 * F * F
    extra = (SIDES[6] ** 2 + SIDES[7] ** 2) * 9 * F * F  # stride-2 3x3 for P6, P7
    assert _rows(tiny_summary)["fpn"].macs == laterals + outputs + extra


def test_units_and_table(tiny_summary):
    total = _rows(tiny_summary)["total"]
    assert total.gmacs == total.macs / 1e9
    assert total.gflops == 2 * total.macs / 1e9
    text = model_summary.format_summary(tiny_summary)
    assert f"| total | {total.params:,} " in text
    assert "GFLOPs (2 x MACs)" in text and '"FLOPs"' in text


def test_main_prints_table(capsys):
    assert model_summary.main(["--model=retinanet", f"--params_override={TINY}"]) == 0
    out = capsys.readouterr().out
    assert "| backbone |" in out and "| head |" in out and "| total |" in out
    assert "input 1x128x128x3" in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["--model=mask_rcnn", "--params_override=roi_sampling.cascade_iou_thresholds=[0.6]"],
            "needs type cascade_mask_rcnn",
        ),
        (["--model=mask_rcnn", "--params_override=frcnn_head.fc_dims=0"], "frcnn_head: fc_dims"),
        (["--modle=retinanet"], "did you mean --model"),
        (["--model=retinanet", "--params_override=fpn.fpn_feat_dim=16"], "fpn_feat_dim"),
        (["--model=retinanet", "--params_override=fpn.fpn_feat_dims=0"], "fpn_feat_dims"),
        (["--model=retinanet", "--config_file=/nonexistent/x.yaml"], "/nonexistent/x.yaml"),
        (["--model=nonesuch"], "nonesuch"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, expected):
    assert model_summary.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("model_summary: error: ")
    assert expected in lines[0]


def _check_parts_add_up(summary, names):
    rows = _rows(summary)
    assert [r.name for r in summary.components] == names + ["total"]
    for field in ("params", "trainable_params", "macs"):
        total = sum(getattr(rows[name], field) for name in names)
        assert total == getattr(rows["total"], field), field
    return rows


def test_classification_counts_by_hand():
    params = loader.load_params(
        "classification",
        params_override="{resnet: {resnet_depth: 10}, classification_parser: {output_size: [64, 64]},"
        " classification_head: {endpoints_num_filters: 8}, architecture: {num_classes: 5}}",
    )
    summary = model_summary.summarize(params)
    rows = _check_parts_add_up(summary, ["backbone", "head"])
    # C5 of ResNet-10 at 64 px: 2x2 pixels of 512 channels -> 1x1 conv to 8 -> dense to 5.
    assert rows["head"].macs == 2 * 2 * 512 * 8 + 8 * 5
    assert rows["head"].trainable_params == 512 * 8 + 2 * 8 + 8 * 5 + 5
    assert rows["head"].params == rows["head"].trainable_params + 2 * 8  # BN moving stats
    network = network_factory.classification_network_from_params(params)
    network(tf.zeros([1, 64, 64, 3]))
    assert rows["total"].params == network.count_params()
    with pytest.raises(ParamsError, match="multilevel_features='fpn'"):
        model_summary.summarize(
            loader.load_params(
                "classification", params_override="architecture.multilevel_features=fpn"
            )
        )


def test_segmentation_counts_by_hand():
    params = loader.load_params(
        "segmentation",
        params_override="{resnet: {resnet_depth: 10}, segmentation_parser: {output_size: [64, 64]},"
        " fpn: {fpn_feat_dims: 16}, architecture: {num_classes: 3, max_level: 5},"
        " segmentation_head: {upsample_factor: 2, upsample_num_filters: 4}}",
    )
    rows = _check_parts_add_up(model_summary.summarize(params), ["backbone", "decoder", "head"])
    # P3 at 64 px: 8x8 pixels of 16 channels; two 3x3 convs 16 -> 16, a 2x2 stride-2
    # transposed conv to 4 channels (16x16 outputs, one kernel tap each), a 1x1 conv to 3.
    assert rows["head"].macs == 8 * 8 * 9 * 16 * 16 * 2 + 16 * 16 * 4 * 16 + 16 * 16 * 4 * 3
    network = network_factory.segmentation_network_from_params(params)
    network(tf.zeros([1, 64, 64, 3]))
    assert rows["total"].params == network.count_params()


def test_resnet50_classifier_at_224_matches_the_published_size():
    """The published ResNet-50: 25.6 M parameters and 4.1 B multiply-adds at 224x224."""
    rows = _rows(model_summary.summarize(loader.load_params("classification")))
    assert rows["total"].params == pytest.approx(25.6e6, rel=0.01)
    assert rows["total"].gmacs == pytest.approx(4.1, rel=0.05)


# Mask R-CNN: ResNet-10, FPN P2-P4 of 16 channels, 64x64, 3 classes; 20 test proposals, 5
# detections, 8x8 masks (4x4 ROI features), a 1 x 8 mask head.
MRCNN = {
    "architecture": {"min_level": 2, "max_level": 4, "num_classes": 3, "mask_target_size": 8},
    "resnet": {"resnet_depth": 10},
    "fpn": {"fpn_feat_dims": 16},
    "rpn_head": {"num_filters": 16},
    "frcnn_head": {"fc_dims": 32},
    "mrcnn_head": {"num_convs": 1, "num_filters": 8},
    "maskrcnn_parser": {"output_size": [64, 64]},
    "roi_proposal": {"test_rpn_pre_nms_top_k": 50, "test_rpn_post_nms_top_k": 20},
    "postprocess": {"max_total_size": 5},
}
R, D, FC, M, S = 20, 5, 32, 8, 4  # ROIs, detections, fc dims, mask filters, ROI side


def _mrcnn_rows(model, **extra):
    params = loader.load_params(model, params_override=dict(MRCNN, **extra))
    return params, _rows(model_summary.summarize(params))


def test_mask_rcnn_heads_by_hand_and_params_equal_the_built_model():
    params, rows = _mrcnn_rows("mask_rcnn")
    assert list(rows) == ["backbone", "fpn", "rpn head", "box head", "mask head", "total"]
    # RPN: a shared 3x3 conv and two 1x1 predictions (3 anchors) on P2-P4 (16, 8, 4 px).
    pixels = 16 * 16 + 8 * 8 + 4 * 4
    assert rows["rpn head"].macs == pixels * (9 * F * F + F * 3 + F * 12)
    # Box head on each of R ROIs: fc6 (7 * 7 * F -> FC), fc7, class (K) and box (4 K) layers.
    assert rows["box head"].macs == R * (7 * 7 * F * FC + FC * FC + FC * K + FC * 4 * K)
    # Mask head on each of D detections: 3x3 conv F -> M, 2x2 stride-2 deconv, 1x1 to K
    # class maps, and choosing the detected class's map (an einsum with a one-hot over K).
    up = 2 * S
    assert rows["mask head"].macs == D * (
        S * S * 9 * F * M + S * S * M * 4 * M + up * up * M * K + up * up * K
    )
    from detection.model_fns import factory as model_fn_factory

    model = model_fn_factory.model_fn_from_params(params).build_model()
    parts = [rows[name] for name in list(rows)[:-1]]
    assert sum(p.params for p in parts) == rows["total"].params == model.count_params()
    # The whole network also runs ROI align and the proposal / detection bookkeeping.
    assert rows["total"].macs >= sum(p.macs for p in parts)


def test_cascade_has_one_box_head_row_per_stage():
    _, rows = _mrcnn_rows(
        "cascade_mask_rcnn",
        roi_sampling={"cascade_iou_thresholds": [0.6, 0.7]},
        frcnn_head={"fc_dims": FC, "class_agnostic_bbox_pred": True},
    )
    assert [n for n in rows if n.startswith("box head")] == [
        "box head 0",
        "box head 1",
        "box head 2",
    ]
    for stage in range(3):
        # Class-agnostic: 4 box outputs instead of 4 per class.
        assert rows[f"box head {stage}"].macs == R * (7 * 7 * F * FC + FC * FC + FC * K + FC * 4)
