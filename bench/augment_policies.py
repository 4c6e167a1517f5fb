"""Images per second of tf.data with each AutoAugment policy / RandAugment vs no augmentation.

Decoded shapes scenes (--image_size px, generated in memory, cached) go through
`Dataset.map(augment, num_parallel_calls=AUTOTUNE)` and are batched; the only work besides
the augmentation is slicing the padded boxes/masks. For each setting: --warmup_batches
batches (graph instantiation, autotuning), then --num_runs timings of --num_batches batches,
the settings alternating (so that load changes on a shared machine hit all of them); the
median images/second, its ratio to `none`, and the median process CPU time per image are
reported (CPU time per image is the figure that other load on a shared machine distorts
least).

Usage (from the repository root):
  .venv/bin/python bench/augment_policies.py [--image_size=128 --masks]
"""

import statistics
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from detection.dataloader.augment import autoaugment
from detection.dataloader.augment import randaugment
from detection.tools import make_shapes_dataset

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 128, "Scene side in pixels.")
flags.DEFINE_integer("num_scenes", 64, "Distinct scenes (cycled).")
flags.DEFINE_integer("batch_size", 16, "Images per batch.")
flags.DEFINE_integer("warmup_batches", 10, "Batches read before timing.")
flags.DEFINE_integer("num_batches", 40, "Batches per timed run.")
flags.DEFINE_integer("num_runs", 5, "Timed runs; the median is reported.")
flags.DEFINE_bool("masks", False, "Also carry instance masks through the policies.")
flags.DEFINE_list(
    "settings", "none,v0,v1,v2,v3,test,randaugment", "Settings to time (none is the baseline)."
)

_MAX_SHAPES = 4


def _scenes():
    images, boxes, masks, counts = [], [], [], []
    size = FLAGS.image_size
    for index in range(FLAGS.num_scenes):
        image, instances = make_shapes_dataset.make_scene(np.random.default_rng(index), size)
        scene_boxes = np.zeros([_MAX_SHAPES, 4], np.float32)
        scene_masks = np.zeros([_MAX_SHAPES, size, size], np.uint8)
        for k, (_, mask) in enumerate(instances):
            rows, cols = np.nonzero(mask)
            scene_boxes[k] = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
            scene_masks[k] = mask
        images.append(image)
        boxes.append(scene_boxes / size)
        masks.append(scene_masks)
        counts.append(len(instances))
    return tf.data.Dataset.from_tensor_slices(
        (np.stack(images), np.stack(boxes), np.stack(masks), np.array(counts, np.int32))
    ).cache()


def _augment_fn(setting):
    if setting == "none":
        return lambda image, boxes, masks: (image, boxes, masks)
    if setting == "randaugment":
        augment = randaugment.RandAugment(num_layers=2, magnitude=10)
        return lambda image, boxes, masks: (augment(image), boxes, masks)
    policy = autoaugment.build_policy(setting)

    def augment(image, boxes, masks):
        image, boxes, masks, _ = policy(image, boxes, masks)
        return image, boxes, masks

    return augment


def _dataset(setting):
    augment = _augment_fn(setting)

    def parse(image, boxes, masks, count):
        masks = masks[:count] if FLAGS.masks else None
        image, boxes, masks = augment(image, boxes[:count], masks)
        # A scalar per image keeps batching cheap and identical across settings.
        return image, tf.shape(boxes)[0]

    dataset = _scenes().repeat().map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(FLAGS.batch_size).prefetch(2)


def _rate(iterator):
    """(images per second, process CPU milliseconds per image) of one run."""
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.num_batches):
        next(iterator)
    num_images = FLAGS.num_batches * FLAGS.batch_size
    cpu_ms = (time.process_time() - cpu_start) * 1000 / num_images
    return num_images / (time.perf_counter() - start), cpu_ms


def main(argv):
    del argv
    settings = FLAGS.settings
    print(
        f"augmentation in tf.data: {FLAGS.image_size} px shapes scenes, batch "
        f"{FLAGS.batch_size}, masks {FLAGS.masks}, {FLAGS.num_runs} runs x "
        f"{FLAGS.num_batches} batches after {FLAGS.warmup_batches} warm-up"
    )
    iterators = {}
    for setting in settings:
        start = time.perf_counter()
        iterators[setting] = iter(_dataset(setting))
        for _ in range(FLAGS.warmup_batches):
            next(iterators[setting])
        print(f"  {setting}: first batches after {time.perf_counter() - start:.1f} s")
    rates = {setting: [] for setting in settings}
    cpu_ms = {setting: [] for setting in settings}
    for _ in range(FLAGS.num_runs):
        for setting in settings:
            rate, cpu = _rate(iterators[setting])
            rates[setting].append(rate)
            cpu_ms[setting].append(cpu)
    baseline = statistics.median(rates["none"]) if "none" in rates else None
    for setting in settings:
        median = statistics.median(rates[setting])
        ratio = f"  {median / baseline:5.2f} x none" if baseline else ""
        runs = ", ".join(f"{r:.0f}" for r in rates[setting])
        print(
            f"  {setting:12s} {median:8.1f} images/s{ratio}  "
            f"{statistics.median(cpu_ms[setting]):6.2f} CPU ms/image   (runs: {runs})"
        )


if __name__ == "__main__":
    app.run(main)
