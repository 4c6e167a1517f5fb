"""Drawing detections on images (masks, boxes, class names, scores) and tiling images."""

import colorsys
import csv
import json

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _color(class_id):
    # Golden-ratio hue steps give distinct, stable colors per class id.
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


MASK_ALPHA = 0.5


def blend_masks(image, masks, classes, alpha=MASK_ALPHA):
    """Tints each mask's pixels with its class colour: `(1 - alpha) * pixel + alpha * colour`.

    Args:
      image: [h, w, 3] uint8.
      masks: [k, h, w] {0, 1} instance masks in the image's pixels.
      classes: [k] int class ids (the colours).
      alpha: opacity of the tint.

    Returns:
      [h, w, 3] uint8 copy; where masks overlap, the later one is on top.
    """
    out = np.asarray(image, np.float64).copy()
    for mask, class_id in zip(np.asarray(masks), np.asarray(classes)):
        inside = np.asarray(mask, bool)
        out[inside] = (1.0 - alpha) * out[inside] + alpha * np.array(_color(int(class_id)))
    return np.round(out).astype(np.uint8)


def draw_detections(
    image, boxes, classes, scores, category_names=None, min_score=0.3, line_width=2, masks=None
):
    """Draws instance masks (tinted), then boxes with 'name: score' labels.

    Args:
      image: [h, w, 3] uint8.
      boxes: [k, 4] yxyx in the image's pixels.
      classes: [k] int class ids.
      scores: [k] float scores; detections below `min_score` are not drawn.
      category_names: {class_id: name}; ids without a name are drawn as numbers.
      line_width: box outline width in pixels.
      masks: optional [k, h, w] {0, 1} instance masks in the image's pixels.

    Returns:
      [h, w, 3] uint8 copy of the image with the detections drawn.
    """
    image = np.asarray(image, np.uint8)
    if masks is not None:
        keep = np.asarray(scores) >= min_score
        image = blend_masks(image, np.asarray(masks)[keep], np.asarray(classes)[keep])
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    category_names = category_names or {}
    for box, class_id, score in zip(np.asarray(boxes), np.asarray(classes), np.asarray(scores)):
        if score < min_score:
            continue
        ymin, xmin, ymax, xmax = [float(v) for v in box]
        color = _color(int(class_id))
        draw.rectangle([xmin, ymin, xmax, ymax], outline=color, width=line_width)
        label = f"{category_names.get(int(class_id), int(class_id))}: {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        text_w, text_h = right - left, bottom - top
        text_y = ymin - text_h - 2 if ymin - text_h - 2 >= 0 else ymin
        # Keep the label inside the image: shift it left at the right border.
        text_x = max(0.0, min(xmin, canvas.width - text_w - 3))
        draw.rectangle([text_x, text_y, text_x + text_w + 2, text_y + text_h + 2], fill=color)
        draw.text((text_x + 1, text_y), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def image_grid(images, columns, pad=4, background=255):
    """Tiles same-dtype [h_i, w_i, 3] images into one image, `columns` per row."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    cell_h = max(image.shape[0] for image in images)
    cell_w = max(image.shape[1] for image in images)
    rows = (len(images) + columns - 1) // columns
    grid = np.full(
        (rows * (cell_h + pad) + pad, columns * (cell_w + pad) + pad, 3), background, np.uint8
    )
    for i, image in enumerate(images):
        row, col = divmod(i, columns)
        y, x = pad + row * (cell_h + pad), pad + col * (cell_w + pad)
        grid[y : y + image.shape[0], x : x + image.shape[1]] = image
    return grid


def load_category_names(path):
    """{id: name} from a COCO annotation JSON (`categories`) or an 'id,name' CSV file."""
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return {int(c["id"]): c["name"] for c in json.load(f)["categories"]}
    with open(path, encoding="utf-8", newline="") as f:
        return {
            int(row[0]): row[1].strip() for row in csv.reader(f) if row and row[0].strip().isdigit()
        }
