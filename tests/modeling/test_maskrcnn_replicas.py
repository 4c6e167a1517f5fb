"""2 mirrored CPU replicas train and evaluate a tiny Cascade Mask R-CNN as one device (XLA
train steps): same losses, same weights after 2 steps (5e-5), same detections and COCO box
and mask metrics.

The script runs in its own process (logical CPU devices must exist before TensorFlow starts);
see maskrcnn_replicas_script.py for why each global batch holds one image twice."""

import json
import os
import subprocess
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))


def test_two_mirrored_replicas_equal_one_device(tmp_path, tiny_shapes):
    out = tmp_path / "result.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO, env.get("PYTHONPATH")) if p)
    process = subprocess.run(
        [
            sys.executable,
            os.path.join(_HERE, "maskrcnn_replicas_script.py"),
            "mask_rcnn",  # The cascade's extra stages run the same ops (tested on one device).
            tiny_shapes["root"],
            str(out),
        ],
        cwd=_REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["num_replicas"] == 2
    one, two = result["losses_one_device"], result["losses_mirrored"]
    assert set(one) == set(two) and "mask_loss" in one and "fast_rcnn_box_loss" in one
    # Losses normalized by a count alone split exactly; the box and mask losses add the
    # original's 0.01 to their count, so an image alone (n + 0.01) and the same image twice
    # (2 n + 0.01) differ by up to 0.005 / n relative (n: a few foreground coordinates).
    for name in ("rpn_score_loss", "fast_rcnn_class_loss", "l2_regularization_loss"):
        assert two[name] == pytest.approx(one[name], rel=1e-5), name
    for name in ("rpn_box_loss", "fast_rcnn_box_loss", "mask_loss", "total_loss"):
        assert two[name] == pytest.approx(one[name], rel=3e-3), name
    # The weights moved, and moved the same way on both.
    assert result["max_weight_change"] > 1e-3
    # Two replicas sum each gradient in another order than one device: float32 rounding.
    # The stem kernel (the longest sums) has differed by up to 1.2e-5; a wrong scaling of
    # one replica's gradient would differ by the size of the change itself (> 1e-3).
    assert max(result["max_weight_diff"].values()) < 5e-5, result["max_weight_diff"]
    # Evaluation on 2 replicas: every val image once, the same detections and metrics.
    assert result["eval_ids"][0] == result["eval_ids"][1] and len(result["eval_ids"][0]) == 8
    assert max(result["max_detection_diff"].values()) < 1e-4, result["max_detection_diff"]
    metrics_one, metrics_two = result["metrics_one_device"], result["metrics_mirrored"]
    assert "mask_AP" in metrics_one
    for name, value in metrics_one.items():
        assert metrics_two[name] == pytest.approx(value, abs=1e-6), name
