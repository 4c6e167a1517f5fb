"""Draws docs/images/augmentation_ops.png: one shapes image through every augmentation op.

    python -m detection.tools.augmentation_gallery [--output docs/images/augmentation_ops.png]

One synthetic shapes scene (`make_shapes_dataset.make_scene`) goes through each op of
`detection_ops.OPS` at one magnitude, then through a few random draws of policy `v0`; each
cell shows the result with its boxes (and the masks' outlines, to show that they move with
the pixels). Pixel constants (translate, cutout) are scaled from the reference's ~640 px
images to the scene size, so that the effects stay visible. The `*_Only_BBoxes` ops are
shown with every box processed (the policies pick each box with probability p / 3).
"""

import argparse
import os

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from detection.dataloader.augment import autoaugment
from detection.dataloader.augment import detection_ops
from detection.dataloader.augment import magnitudes
from detection.dataloader.augment.sample import Sample
from detection.tools import make_shapes_dataset
from detection.tools import visualize

_REFERENCE_IMAGE_SIZE = 640
_BOX_COLORS = ((255, 64, 64), (64, 200, 255), (255, 220, 0), (160, 255, 120))
# Grouped: colour ops, cutouts, geometric ops that move boxes, ops inside boxes.
GALLERY_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "Cutout",
    "BBox_Cutout",
    "Rotate_BBox",
    "ShearX_BBox",
    "ShearY_BBox",
    "TranslateX_BBox",
    "TranslateY_BBox",
    "Flip_Only_BBoxes",
    "Rotate_Only_BBoxes",
    "ShearX_Only_BBoxes",
    "ShearY_Only_BBoxes",
    "TranslateX_Only_BBoxes",
    "TranslateY_Only_BBoxes",
    "Equalize_Only_BBoxes",
    "Cutout_Only_BBoxes",
)


def scene(seed, size):
    """A scene with a circle, a square and a triangle on a gradient background.

    Returns:
      (image [size, size, 3] uint8, normalized boxes [n, 4] float32, masks [n, size, size]).
    """
    for attempt in range(1000):
        rng = np.random.default_rng([seed, attempt])
        image, instances = make_shapes_dataset.make_scene(rng, size)
        gradient = 0 < np.abs(np.diff(image.astype(int), axis=1)).mean() < 3
        if gradient and len({category for category, _ in instances}) == 3:
            break
    masks = np.stack([mask for _, mask in instances]).astype(np.uint8)
    boxes = []
    for mask in masks:
        rows, cols = np.nonzero(mask)
        boxes.append([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
    return image, np.array(boxes, np.float32) / size, masks


def scaled_constants(size):
    """The reference constants with pixel amounts scaled to `size` px images."""
    scale = size / _REFERENCE_IMAGE_SIZE
    reference = magnitudes.DETECTION_CONSTANTS
    return magnitudes.Constants(
        translate_const=reference.translate_const * scale,
        translate_bbox_const=reference.translate_bbox_const * scale,
        cutout_const=round(reference.cutout_const * scale),
        cutout_bbox_const=round(reference.cutout_bbox_const * scale),
    )


def _draw(sample, title, label_height=14):
    image = Image.fromarray(sample.image.numpy())
    draw = ImageDraw.Draw(image)
    height, width = sample.image.shape[:2]
    masks = None if sample.masks is None else sample.masks.numpy().astype(bool)
    for row, (box, index) in enumerate(zip(sample.boxes.numpy(), sample.indices.numpy())):
        color = _BOX_COLORS[index % len(_BOX_COLORS)]
        if masks is not None:
            mask = masks[row]
            edge = mask & ~(
                np.roll(mask, 1, 0)
                & np.roll(mask, -1, 0)
                & np.roll(mask, 1, 1)
                & np.roll(mask, -1, 1)
            )
            for y, x in zip(*np.nonzero(edge)):
                draw.point((int(x), int(y)), fill=(255, 255, 255))
        ymin, xmin, ymax, xmax = box * [height, width, height, width]
        draw.rectangle([xmin, ymin, xmax - 1, ymax - 1], outline=color, width=1)
    cell = Image.new("RGB", (width, height + label_height), (255, 255, 255))
    cell.paste(image, (0, label_height))
    ImageDraw.Draw(cell).text((2, 1), title, fill=(0, 0, 0), font=ImageFont.load_default())
    return np.asarray(cell)


def gallery(size=144, magnitude=8, seed=3, columns=6, num_policy_draws=4):
    """Returns the gallery as a uint8 [H, W, 3] array."""
    image, boxes, masks = scene(seed, size)
    constants = scaled_constants(size)
    original = Sample(
        tf.constant(image), tf.constant(boxes), tf.constant(masks), tf.range(len(boxes))
    )
    cells = [_draw(original, "original")]
    for index, name in enumerate(GALLERY_OPS):
        per_box = name.endswith("_Only_BBoxes")
        # The bbox-only ops pick each box with p / 3: p = 3 processes every box.
        probability = 1.0 / magnitudes.BBOX_ONLY_PROBABILITY_SCALE if per_box else 1.0
        out = detection_ops.OPS[name](
            original, probability, magnitude, tf.constant([seed, index]), constants
        )
        cells.append(_draw(out, name))
    policy = autoaugment.build_policy("v0", constants=constants)
    for draw_index in range(num_policy_draws):
        out = policy(image, boxes, masks, seed=tf.constant([seed, 100 + draw_index]))
        cells.append(_draw(out, f"v0 draw {draw_index + 1}"))
    return visualize.image_grid(cells, columns)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join("docs", "images", "augmentation_ops.png"))
    parser.add_argument("--size", type=int, default=144, help="scene side in pixels")
    parser.add_argument("--magnitude", type=float, default=8, help="op magnitude, 0..10")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    grid = gallery(args.size, args.magnitude, args.seed)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    Image.fromarray(grid).save(args.output, optimize=True)
    print(f"wrote {args.output} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
