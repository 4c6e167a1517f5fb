"""Conversions between the framework's batched numpy outputs and COCO formats.

Predictions and groundtruths arrive as batched numpy dicts (see docs/CONVENTIONS.md,
'Detection predictions' and 'Eval groundtruths'); pycocotools wants lists of per-instance
dicts with `[x, y, width, height]` boxes in original image pixels. Everything here is plain
numpy + pycocotools so it runs on the host after each eval step.

Batch padding: an image entry is padding when its `source_id` is -1 or, if the predictions carry
a `valid: [b] bool` key, when `valid` is False. Instance padding: only the first
`num_detections` rows of each image are read.
"""

import contextlib
import io
import json
import logging
import os

import numpy as np
from pycocotools import coco as pycoco
from pycocotools import mask as mask_api

from detection.ops import boxes as box_ops
from detection.ops import masks as mask_ops

_REQUIRED_PREDICTION_KEYS = (
    "source_id",
    "image_info",
    "num_detections",
    "detection_boxes",
    "detection_classes",
    "detection_scores",
)
_REQUIRED_GROUNDTRUTH_KEYS = ("source_id", "height", "width", "num_detections", "boxes", "classes")


def _checked_count(count, max_count, classes, image_id, what, kind):
    """`count` as an int after checking it fits [0, max_count] and its classes are >= 1.

    Args:
      count: the image's num_detections (scalar).
      max_count: the padded size of its class row.
      classes: [max_count] class ids of the image.
      image_id, what, kind: for the message ('detections' or 'instances').
    """
    n = int(count)
    if not 0 <= n <= max_count:
        raise ValueError(
            f"{what}: num_detections {n} of image {image_id} is outside [0, {max_count}]."
        )
    bad = classes[:n] < 1
    if np.any(bad):
        raise ValueError(
            f"{what}: image {image_id} has {'detection ' if kind == 'detections' else ''}classes "
            f"{np.unique(classes[:n][bad]).tolist()} < 1 among its first {n} "
            f"(num_detections) {kind}."
        )
    return n


@contextlib.contextmanager
def quiet_stdout(logger=None, level=logging.DEBUG):
    """Captures pycocotools' prints and forwards them to `logger` at `level`."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    text = buffer.getvalue().strip()
    if text:
        (logger or logging.getLogger(__name__)).log(level, "%s", text)


def _require(batch, keys, what):
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ValueError(f"{what} is missing keys {missing}; got keys {sorted(batch)}.")


def _as_array(batch, key, what, ndim, batch_size=None):
    value = np.asarray(batch[key])
    if value.ndim != ndim:
        raise ValueError(f"{what}[{key!r}] must have rank {ndim}, got shape {value.shape}.")
    if batch_size is not None and value.shape[0] != batch_size:
        raise ValueError(f"{what}[{key!r}] has batch size {value.shape[0]}, expected {batch_size}.")
    return value


def valid_entries(source_ids, valid=None):
    """Which batch entries are real images.

    Args:
      source_ids: [b] integer image ids; -1 marks a padding entry.
      valid: optional [b] bool; False marks a padding entry.

    Returns:
      [b] bool numpy array.
    """
    keep = np.asarray(source_ids) != -1
    if valid is not None:
        valid = np.asarray(valid).astype(bool)
        if valid.shape != keep.shape:
            raise ValueError(f"`valid` has shape {valid.shape}, expected {keep.shape}.")
        keep &= valid
    return keep


def encode_mask_rle(binary_mask):
    """[H, W] {0, 1} mask -> COCO compressed RLE dict with a JSON-safe `counts` string."""
    rle = mask_api.encode(np.asfortranarray(np.asarray(binary_mask, np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def predictions_to_coco_results(predictions, include_mask=False):
    """Batched detections -> COCO result list in original image pixels.

    Args:
      predictions: dict of numpy arrays: `source_id [b]`, `image_info [b, 4, 2]`,
        `num_detections [b]`, `detection_boxes [b, K, 4]` (network-input pixels, yxyx),
        `detection_classes [b, K]`, `detection_scores [b, K]`, optional `valid [b]` bool.
        With include_mask also `detection_masks [b, K, mask_h, mask_w]` (probabilities relative to
        the box) and optionally `detection_outer_boxes [b, K, 4]`, the boxes the masks span when
        they differ from the detection boxes (ShapeMask).
      include_mask: whether to paste and RLE-encode masks into `segmentation`.

    Returns:
      (image_ids, results): the list of valid image ids of the batch (with or without detections)
      and a list of dicts `{image_id, category_id, bbox: [x, y, w, h], score[, segmentation]}`.
    """
    what = "predictions"
    _require(predictions, _REQUIRED_PREDICTION_KEYS, what)
    source_ids = _as_array(predictions, "source_id", what, 1)
    b = source_ids.shape[0]
    image_info = _as_array(predictions, "image_info", what, 3, b)
    num_detections = _as_array(predictions, "num_detections", what, 1, b)
    boxes = _as_array(predictions, "detection_boxes", what, 3, b)
    classes = _as_array(predictions, "detection_classes", what, 2, b)
    scores = _as_array(predictions, "detection_scores", what, 2, b)
    max_k = boxes.shape[1]
    if classes.shape[1] != max_k or scores.shape[1] != max_k:
        raise ValueError(
            f"{what}: detection_boxes {boxes.shape}, "
            f"detection_classes {classes.shape} "
            f"and detection_scores {scores.shape} disagree on K."
        )
    keep = valid_entries(source_ids, predictions.get("valid"))
    original_boxes = box_ops.boxes_to_original_pixels(
        np.asarray(boxes, np.float64), np.asarray(image_info, np.float64)
    )
    xywh = box_ops.yxyx_to_xywh(original_boxes)
    if include_mask:
        _require(predictions, ("detection_masks",), what)
        masks = _as_array(predictions, "detection_masks", what, 4, b)
        mask_boxes = original_boxes
        if "detection_outer_boxes" in predictions:
            mask_boxes = box_ops.boxes_to_original_pixels(
                np.asarray(_as_array(predictions, "detection_outer_boxes", what, 3, b), np.float64),
                np.asarray(image_info, np.float64),
            )

    image_ids, results = [], []
    for i in np.flatnonzero(keep):
        image_id = int(source_ids[i])
        image_ids.append(image_id)
        n = _checked_count(num_detections[i], max_k, classes[i], image_id, what, "detections")
        height, width = (int(round(v)) for v in image_info[i, 0])
        for j in range(n):
            result = {
                "image_id": image_id,
                "category_id": int(classes[i, j]),
                "bbox": [float(v) for v in xywh[i, j]],
                "score": float(scores[i, j]),
            }
            if include_mask:
                result["segmentation"] = encode_mask_rle(
                    mask_ops.paste_instance_mask(masks[i, j], mask_boxes[i, j], height, width)
                )
            results.append(result)
    return image_ids, results


def groundtruths_to_coco_images_and_annotations(groundtruths, keep=None, include_mask=False):
    """Batched eval groundtruths -> COCO `images` and `annotations` (without annotation ids).

    Args:
      groundtruths: dict of numpy arrays as in CONVENTIONS 'Eval groundtruths': `source_id [b]`,
        `height [b]`, `width [b]`, `num_detections [b]`, `boxes [b, M, 4]` (original pixels,
        yxyx), `classes [b, M]`, optional `areas [b, M]` (else box areas), optional
        `is_crowds [b, M]` (else 0). With include_mask also `masks [b, M, H, W]` binary instance
        masks in original pixels, top-left aligned and cropped to each image's height x width.
      keep: optional [b] bool of real entries; default: source_id != -1.
      include_mask: whether to RLE-encode `masks` into `segmentation`.

    Returns:
      (images, annotations): lists of COCO dicts.
    """
    what = "groundtruths"
    _require(groundtruths, _REQUIRED_GROUNDTRUTH_KEYS, what)
    source_ids = _as_array(groundtruths, "source_id", what, 1)
    b = source_ids.shape[0]
    heights = _as_array(groundtruths, "height", what, 1, b)
    widths = _as_array(groundtruths, "width", what, 1, b)
    num_instances = _as_array(groundtruths, "num_detections", what, 1, b)
    boxes = _as_array(groundtruths, "boxes", what, 3, b)
    classes = _as_array(groundtruths, "classes", what, 2, b)
    max_m = boxes.shape[1]
    areas = (
        _as_array(groundtruths, "areas", what, 2, b)
        if "areas" in groundtruths
        else (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    )
    crowds = (
        _as_array(groundtruths, "is_crowds", what, 2, b)
        if "is_crowds" in groundtruths
        else np.zeros(classes.shape, np.int32)
    )
    if include_mask:
        _require(groundtruths, ("masks",), what)
        masks = _as_array(groundtruths, "masks", what, 4, b)
    xywh = box_ops.yxyx_to_xywh(np.asarray(boxes, np.float64))
    keep = valid_entries(source_ids) if keep is None else np.asarray(keep, bool)

    images, annotations = [], []
    for i in np.flatnonzero(keep):
        image_id = int(source_ids[i])
        height, width = int(heights[i]), int(widths[i])
        images.append({"id": image_id, "height": height, "width": width})
        n = _checked_count(num_instances[i], max_m, classes[i], image_id, what, "instances")
        for j in range(n):
            annotation = {
                "image_id": image_id,
                "category_id": int(classes[i, j]),
                "bbox": [float(v) for v in xywh[i, j]],
                "area": float(areas[i, j]),
                "iscrowd": int(crowds[i, j]),
            }
            if include_mask:
                annotation["segmentation"] = encode_mask_rle(masks[i, j, :height, :width] > 0)
            annotations.append(annotation)
    return images, annotations


def coco_dataset(images, annotations, category_ids, category_names=None):
    """Assembles a COCO dataset dict, numbering annotations 1.. in order.

    Args:
      images: list of `{id, height, width}`.
      annotations: list of annotation dicts without `id`.
      category_ids: iterable of int category ids.
      category_names: optional {id: name}; missing names default to str(id).

    Returns:
      dict with `images`, `annotations`, `categories`.
    """
    names = category_names or {}
    return {
        "images": list(images),
        "annotations": [dict(a, id=k + 1) for k, a in enumerate(annotations)],
        "categories": [
            {"id": int(c), "name": names.get(int(c), str(int(c)))}
            for c in sorted(set(int(c) for c in category_ids))
        ],
    }


def groundtruths_to_coco_dataset(
    groundtruth_batches, category_ids=None, category_names=None, include_mask=False
):
    """One or more groundtruth batches -> COCO dataset dict.

    Args:
      groundtruth_batches: a groundtruth dict (see
        `groundtruths_to_coco_images_and_annotations`) or a list of them.
      category_ids: category ids to declare; default: the classes present.
      category_names: optional {id: name}.
      include_mask: whether to encode groundtruth `masks`.

    Returns:
      COCO dataset dict.
    """
    if isinstance(groundtruth_batches, dict):
        groundtruth_batches = [groundtruth_batches]
    images, annotations = [], []
    for batch in groundtruth_batches:
        batch_images, batch_annotations = groundtruths_to_coco_images_and_annotations(
            batch, include_mask=include_mask
        )
        images += batch_images
        annotations += batch_annotations
    if category_ids is None:
        category_ids = {a["category_id"] for a in annotations}
    return coco_dataset(images, annotations, category_ids, category_names)


def coco_from_dataset(dataset):
    """COCO dataset dict -> indexed pycocotools COCO object (index build output silenced)."""
    coco = pycoco.COCO()
    coco.dataset = dataset
    with quiet_stdout():
        coco.createIndex()
    return coco


def load_coco_json(path):
    """Loads a COCO annotation JSON (e.g. params.eval.val_json_file) into pycocotools COCO.

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: if `path` is not a COCO JSON object with `images` and `annotations`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO annotation file {path!r} does not exist.")
    try:
        with open(path) as f:
            dataset = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"COCO annotation file {path!r} is not valid JSON: {e}") from e
    if not isinstance(dataset, dict) or "images" not in dataset or "annotations" not in dataset:
        raise ValueError(
            f"COCO annotation file {path!r} must be a JSON object with `images` and `annotations`."
        )
    dataset.setdefault("categories", [])
    return coco_from_dataset(dataset)


def load_results(coco_gt, results):
    """COCO result list -> pycocotools result COCO object, allowing an empty list.

    pycocotools' `loadRes` indexes `results[0]` and so fails on no detections; an empty result
    set is built directly instead. The result dicts are copied since `loadRes` adds fields.
    """
    if not results:
        return coco_from_dataset(
            {
                "images": list(coco_gt.dataset["images"]),
                "annotations": [],
                "categories": list(coco_gt.dataset.get("categories", [])),
            }
        )
    with quiet_stdout():
        return coco_gt.loadRes([dict(r) for r in results])


def dump_results(results, path):
    """Writes a COCO result list as JSON (the format `COCO.loadRes(path)` reads)."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f)
