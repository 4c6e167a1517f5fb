"""A tiny RetinaNet with random weights (checkpoint + config) and its in-process eval predictions.

Random weights, but not the initializer's: the prediction layers' kernels are scaled up so that
scores spread over (0, 1) and boxes move off their anchors. Scores near the 0.01 prior would
all tie, and which of two tied detections comes first is not something to compare.
The network input (96 x 96) differs from the 64 x 64 images so that the resize is exercised.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

from detection.configs import loader
from detection.core.modes import EVAL
from detection.executor import checkpoints
from detection.model_fns import factory as model_fn_factory
from detection.ops import boxes as box_ops
from detection.serving import input_types
from detection.serving import module as serving_module
from detection.serving.outputs import OutputOptions
from detection.tools import export_saved_model

NETWORK_SIZE = (96, 96)
NUM_VAL = 8
# (input type, --batch_size, --input_image_size): static and dynamic batches and sizes.
EXPORTS = (
    ("raw_image_tensor", "8", None),
    ("image_tensor", "None", "None,None"),
    ("image_bytes", "None", None),
    ("tf_example", "8", None),
)

TINY_CONFIG = {
    "type": "retinanet",
    "architecture": {"min_level": 3, "max_level": 5, "num_classes": 4, "use_bfloat16": False},
    "resnet": {"resnet_depth": 10},
    "fpn": {"fpn_feat_dims": 16},
    "retinanet_head": {"num_convs": 1, "num_filters": 16},
    "anchor": {"num_scales": 2, "anchor_size": 3.0},
    "retinanet_parser": {"output_size": list(NETWORK_SIZE), "max_num_instances": 8},
    "eval": {"eval_batch_size": NUM_VAL},
    "postprocess": {"max_total_size": 10, "pre_nms_num_boxes": 50, "score_threshold": 0.0},
}


def scale_prediction_kernels(model, seed=0):
    """Replaces the prediction layers' weights by wider random ones (module docstring)."""
    rng = np.random.default_rng(seed)
    spreads = {
        "class-predict/kernel": 1.0,
        "class-predict/bias": 1.0,
        "box-predict/kernel": 0.05,
    }
    for variable in model.variables:
        for suffix, std in spreads.items():
            if variable.path.endswith(suffix):
                mean = -1.0 if suffix == "class-predict/bias" else 0.0
                variable.assign(rng.normal(mean, std, variable.shape).astype(np.float32))


@pytest.fixture(scope="session")
def tiny_model(tiny_shapes, tmp_path_factory):
    """Config file, params, checkpoint and the model fn's EVAL predictions on the val split.

    `reference` holds the predictions of the 8 val images in dataset order with boxes mapped
    to original pixels, plus `source_id` and the raw network-input boxes.
    """
    root = tmp_path_factory.mktemp("serving")
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(TINY_CONFIG))
    override = json.dumps(
        {
            "eval": {
                "eval_file_pattern": tiny_shapes["val_file_pattern"],
                "val_json_file": tiny_shapes["val_annotations"],
            }
        }
    )
    params = loader.load_params(None, [str(config_file)], override)
    model_fn = model_fn_factory.model_fn_from_params(params)
    model = model_fn.build_model()
    scale_prediction_kernels(model)
    prefix = tf.train.Checkpoint(model=checkpoints.model_variables(model)).save(
        str(root / "run" / "ckpt")
    )

    features, labels = next(iter(model_fn.input_fn(EVAL)(None)))
    predictions = model_fn(model, features, labels, EVAL)["predictions"]
    reference = {k: np.asarray(v) for k, v in predictions.items()}
    reference["original_boxes"] = box_ops.boxes_to_original_pixels(
        reference["detection_boxes"].astype(np.float64), reference["image_info"].astype(np.float64)
    )
    return {
        "config_file": str(config_file),
        "override": override,
        "params": params,
        "checkpoint": prefix,
        "model_fn": model_fn,
        "model": model,
        "reference": reference,
        "features": features,
        "labels": labels,
        "root": root,
    }


@pytest.fixture(scope="session")
def exports(tiny_model, tmp_path_factory):
    """{input type: SavedModel dir}; image_bytes through export_saved_model.main."""
    root = tmp_path_factory.mktemp("exports")
    dirs = {}
    for input_type, batch_size, image_size in EXPORTS:
        dirs[input_type] = str(root / input_type)
        if input_type == "image_bytes":
            code = export_saved_model.main(
                [
                    f"--config_file={tiny_model['config_file']}",
                    f"--checkpoint_path={tiny_model['checkpoint']}",
                    f"--export_dir={dirs[input_type]}",
                    f"--input_type={input_type}",
                    f"--batch_size={batch_size}",
                ]
            )
            assert code == 0
            continue
        spec = input_types.resolve_input_spec(
            input_type,
            input_types.parse_batch_size(batch_size),
            None if image_size is None else input_types.parse_image_size(image_size),
            NETWORK_SIZE,
        )
        module = serving_module.ServingModule(
            tiny_model["model_fn"],
            tiny_model["model"],
            "retinanet",
            spec,
            NETWORK_SIZE,
            OutputOptions(),
        )
        serving_module.export_saved_model(module, dirs[input_type], tiny_model["params"])
    return dirs
