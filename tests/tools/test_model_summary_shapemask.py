"""model_summary --model=shapemask: rows per component, exact parameter counts, hand-counted
MACs of the mask heads."""

import pytest
import tensorflow as tf

from detection.configs import loader
from detection.modeling.networks import factory as network_factory
from detection.tools import model_summary

D = 5  # detections (postprocess.max_total_size)
S = 8  # mask_crop_size
C = 4  # num_downsample_channels
U = 2  # upsample_factor
N = 2  # num_convs of the mask heads
NUM_CLASSES = 3
TINY = (
    "{resnet: {resnet_depth: 10}, fpn: {fpn_feat_dims: 16}, "
    "retinanet_head: {num_convs: 1, num_filters: 16}, "
    "architecture: {num_classes: 3, min_level: 3, max_level: 5}, "
    "shapemask_parser: {output_size: [64, 64], mask_crop_size: 8, upsample_factor: 2}, "
    "shapemask_head: {mask_crop_size: 8, upsample_factor: 2, num_downsample_channels: 4, "
    "num_convs: 2}, postprocess: {max_total_size: 5, pre_nms_num_boxes: 20}}"
)


@pytest.fixture(scope="module")
def tiny():
    params = loader.load_params("shapemask", params_override=TINY)
    return params, model_summary.summarize(params)


def _rows(summary):
    return {row.name: row for row in summary.components}


def test_rows_add_up_to_the_total_and_match_keras(tiny):
    params, summary = tiny
    rows = _rows(summary)
    names = [r.name for r in summary.components]
    assert names == [
        "backbone",
        "fpn",
        "head",
        "shape prior head",
        "coarse mask head",
        "fine mask head",
        "total",
    ]
    for field in ("params", "trainable_params", "macs"):
        parts = sum(getattr(rows[name], field) for name in names[:-1])
        assert parts == getattr(rows["total"], field), field
    network = network_factory.shapemask_network_from_params(params)
    outputs = network(tf.zeros([1, 32, 32, 3]), training=False)
    box = tf.constant([[[0.0, 0.0, 8.0, 8.0]]])
    network.mask_outputs(outputs["fpn_features"], box, box, tf.ones([1, 1], tf.int32))
    assert rows["total"].params == network.count_params()
    assert "1 shape prior(s) per class" in summary.description


def test_mask_head_counts_by_hand(tiny):
    rows = _rows(tiny[1])
    pixels = D * S * S
    conv = 9 * C * C  # products per output pixel of a 3x3 conv, C -> C
    # Coarse: prior embedding (1 -> C), N convs, 1x1 prediction (C -> classes).
    assert rows["coarse mask head"].macs == pixels * (C + N * conv + C * NUM_CLASSES)
    # Fine: coarse-probability embedding, N convs, the U x U transposed conv (each input value
    # spreads over U * U * C outputs), the prediction at the upsampled size.
    fine = pixels * (C + N * conv + U * U * C * C) + D * (S * U) ** 2 * C * NUM_CLASSES
    assert rows["fine mask head"].macs == fine
    # Weights: embedding C + C, convs (9 C C + C) each, batch norm 4 C each (2 C trainable),
    # prediction C * classes + classes (fine: plus the transposed conv U U C C + C).
    coarse_weights = 2 * C + N * (conv + C) + C * NUM_CLASSES + NUM_CLASSES
    assert rows["coarse mask head"].trainable_params == coarse_weights + N * 2 * C
    assert rows["coarse mask head"].params == coarse_weights + N * 4 * C
    assert rows["fine mask head"].trainable_params == (
        coarse_weights + U * U * C * C + C + N * 2 * C
    )


def test_shape_prior_head_counts(tiny):
    row = _rows(tiny[1])["shape prior head"]
    fpn = 16
    # 1x1 downsample (fpn -> C) and the shape classifier (C -> classes * 1 cluster).
    assert row.params == row.trainable_params == fpn * C + C + C * NUM_CLASSES + NUM_CLASSES
    downsample = D * S * S * fpn * C
    classifier = D * C * NUM_CLASSES
    mixing = D * NUM_CLASSES * S * S  # picks the class's prior: [D, classes] x [classes, S S]
    # Two box-to-box resamplings (the box mask and the prior), rows then columns each.
    resample = 2 * D * (S * S * S + S * S * S)
    assert row.macs == downsample + classifier + mixing + resample


def test_main_prints_the_rows(capsys):
    assert model_summary.main(["--model=shapemask", f"--params_override={TINY}"]) == 0
    out = capsys.readouterr().out
    for name in ("shape prior head", "coarse mask head", "fine mask head", "total"):
        assert f"| {name} |" in out
