"""Shape priors for ShapeMask: k-means centroids of the training set's instance masks.

    python -m detection.tools.make_shape_priors --file_pattern='tfrecords/train-*' \
        --output_path=shape_priors.npy [--num_classes=91 --num_clusters=20 --prior_size=32]
        [--class_agnostic] [--classes=all|voc|nonvoc|1,2] [--max_masks_per_class=5000]

Reads TFRecords with instance masks (`create_coco_tfrecord --include_masks`; the shapes
dataset's records have them), crops every non-crowd instance mask to its box and resizes it to
prior_size x prior_size (the `crop_and_resize_masks` geometry of the parser), then runs k-means
(k-means++ seeding, Lloyd iterations, the best of `--num_restarts` runs by squared error) on
the masks of each class, or of all classes together with `--class_agnostic`.

Output: a float32 .npy array [num_classes, num_clusters, prior_size, prior_size] (class row c
holds class c's centroids; row 0 is the background), or [1, num_clusters, prior_size,
prior_size] with --class_agnostic: the format of the original framework's
`kmeans_class_priors_91x20x32x32.npy`, which `shapemask_head.shape_prior_path` loads (with
`use_category_for_mask: false`, the class-agnostic file). Priors span the tight box, values in
[0, 1]. A class with fewer masks than clusters repeats its masks; a class without masks (the
background, classes left out by --classes) gets all-zero priors, i.e. no prior. `--classes`
restricts the masks to a split, e.g. the classes whose masks train in the partially
supervised setting, so the priors never see a held-out class.

Bad flags or data end the process with exit code 2 and one line on stderr.
"""

import glob
import sys

import numpy as np

from detection.core import exit_codes
from detection.main_lib import OneLineParser, UsageError

PROG = "make_shape_priors"


def kmeans(points, num_clusters, num_iterations=100, num_restarts=3, seed=0):
    """k-means (k-means++ seeding, Lloyd iterations), the best of several restarts.

    Args:
      points: [n, d] float array, n >= num_clusters.
      num_clusters: k >= 1.
      num_iterations: the most Lloyd iterations per restart (stops early when no point moves).
      num_restarts: independent runs; the one of least total squared distance is kept.
      seed: NumPy random seed.

    Returns:
      (centroids [k, d] float64, assignment [n] int, inertia float): the sum of squared
      distances of the points to their centroids.
    """
    points = np.asarray(points, np.float64)
    n = points.shape[0]
    if not 1 <= num_clusters <= n:
        raise ValueError(f"kmeans needs 1 <= num_clusters <= {n} points, got {num_clusters}")
    rng = np.random.default_rng(seed)
    squared_norms = np.sum(points * points, axis=1)

    def distances(centroids):
        d = squared_norms[:, None] - 2.0 * points @ centroids.T
        return np.maximum(d + np.sum(centroids * centroids, axis=1)[None, :], 0.0)

    best = None
    for _ in range(max(int(num_restarts), 1)):
        # k-means++: each next seed is a point drawn with probability ~ its squared distance to
        # the closest seed so far.
        centroids = points[[rng.integers(n)]]
        closest = distances(centroids)[:, 0]
        for _ in range(1, num_clusters):
            total = closest.sum()
            index = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
            centroids = np.concatenate([centroids, points[[index]]])
            closest = np.minimum(closest, distances(centroids[-1:])[:, 0])
        assignment = None
        for _ in range(int(num_iterations)):
            new_assignment = np.argmin(distances(centroids), axis=1)
            if assignment is not None and np.array_equal(new_assignment, assignment):
                break
            assignment = new_assignment
            for k in range(num_clusters):
                members = points[assignment == k]
                if len(members):  # An emptied cluster keeps its centroid.
                    centroids[k] = members.mean(axis=0)
        assignment = np.argmin(distances(centroids), axis=1)
        inertia = float(np.sum(distances(centroids)[np.arange(n), assignment]))
        if best is None or inertia < best[2]:
            best = (centroids.copy(), assignment, inertia)
    return best


def cluster_priors(masks, num_clusters, seed=0, num_restarts=3):
    """[num_clusters, S, S] centroids of `masks` [n, S, S]; zeros without masks.

    With fewer masks than clusters the masks themselves are the centroids, repeated in order.
    """
    masks = np.asarray(masks, np.float32)
    size = masks.shape[1:]
    if len(masks) == 0:
        return np.zeros((num_clusters,) + size, np.float32)
    if len(masks) < num_clusters:
        return masks[np.arange(num_clusters) % len(masks)]
    centroids, _, _ = kmeans(
        masks.reshape(len(masks), -1), num_clusters, num_restarts=num_restarts, seed=seed
    )
    return centroids.reshape((num_clusters,) + size).astype(np.float32)


def read_box_masks(files, prior_size, num_classes):
    """Yields (class id, [prior_size, prior_size] uint8 mask crop * 255) of every instance.

    Raises:
      ValueError: unreadable record, a record without masks, or a class id outside
        [0, num_classes); the message names the file.
    """
    import tensorflow as tf

    from detection.dataloader.tf_example_decoder import TfExampleDecoder
    from detection.ops import boxes as box_ops
    from detection.ops import masks as mask_ops

    # Source ids do not matter here; hashing the image accepts records without them.
    decoder = TfExampleDecoder(include_mask=True, regenerate_source_id=True)

    @tf.function
    def decode(serialized):
        decoded = decoder.decode(serialized)
        return (
            decoded["groundtruth_classes"],
            decoded["groundtruth_is_crowd"],
            decoded["groundtruth_boxes"],
            decoded["groundtruth_instance_masks"],
            tf.shape(decoded["image"])[:2],
        )

    @tf.function(reduce_retracing=True)
    def crop(masks, normalized_boxes, image_size):
        boxes = box_ops.denormalize_boxes(normalized_boxes, image_size)
        return mask_ops.crop_and_resize_masks(masks, boxes, prior_size)

    for path in files:
        try:
            for serialized in tf.data.TFRecordDataset(path):
                classes, is_crowd, boxes, masks, image_size = decode(serialized)
                classes = classes.numpy()
                if masks.shape[0] != len(classes):
                    raise ValueError(
                        f"{path}: a record has {len(classes)} instances but {masks.shape[0]} "
                        "masks; write the records with instance masks (create_coco_tfrecord "
                        "--include_masks)"
                    )
                bad = classes[(classes < 0) | (classes >= num_classes)]
                if bad.size:
                    raise ValueError(
                        f"{path}: class id {int(bad[0])} is outside [0, --num_classes="
                        f"{num_classes})"
                    )
                keep = np.flatnonzero(~is_crowd.numpy())
                if not keep.size:
                    continue
                crops = crop(tf.gather(masks, keep), tf.gather(boxes, keep), image_size).numpy()
                quantized = np.round(np.clip(crops, 0.0, 1.0) * 255.0).astype(np.uint8)
                yield from zip(classes[keep].tolist(), quantized)
        except tf.errors.DataLossError:
            raise ValueError(f"{path}: not a readable TFRecord file") from None
        except tf.errors.OpError as error:
            reason = error.message.strip().splitlines()[0] if error.message.strip() else ""
            raise ValueError(f"{path}: cannot decode a record ({reason})") from None


def build_priors(
    files,
    num_classes,
    num_clusters,
    prior_size,
    class_agnostic=False,
    class_ids=None,
    max_masks_per_class=5000,
    seed=0,
    num_restarts=3,
):
    """The prior array of the module docstring, and the number of masks clustered per row.

    Masks beyond `max_masks_per_class` of a row are left out by reservoir sampling (each mask
    equally likely to be kept), which bounds memory on COCO-sized data.

    Raises:
      ValueError: no instance mask of the selected classes in the files, or bad records.
    """
    rng = np.random.default_rng(seed)
    rows = 1 if class_agnostic else num_classes
    kept = [[] for _ in range(rows)]
    seen = [0] * rows
    for class_id, crop in read_box_masks(files, prior_size, num_classes):
        if class_ids is not None and class_id not in class_ids:
            continue
        row = 0 if class_agnostic else class_id
        seen[row] += 1
        if len(kept[row]) < max_masks_per_class:
            kept[row].append(crop)
        else:
            slot = rng.integers(seen[row])
            if slot < max_masks_per_class:
                kept[row][slot] = crop
    if not any(seen):
        raise ValueError("no instance mask of the selected classes in the files")
    priors = np.stack(
        [
            cluster_priors(
                np.asarray(masks, np.float32).reshape(-1, prior_size, prior_size) / 255.0,
                num_clusters,
                seed=seed,
                num_restarts=num_restarts,
            )
            for masks in kept
        ]
    )
    return priors.astype(np.float32), [len(m) for m in kept]


def build_parser():
    parser = OneLineParser(
        prog=f"python -m detection.tools.{PROG}",
        allow_abbrev=False,
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--file_pattern", required=True, help="TFRecords with masks (glob, comma-separated)"
    )
    parser.add_argument("--output_path", required=True, help="the .npy file to write")
    parser.add_argument("--num_classes", type=int, default=91, help="classes incl. background")
    parser.add_argument("--num_clusters", type=int, default=20, help="priors per class")
    parser.add_argument(
        "--prior_size", type=int, default=32, help="= shapemask_head.mask_crop_size"
    )
    parser.add_argument("--class_agnostic", action="store_true", help="one set of priors")
    parser.add_argument("--classes", default="all", help="all, voc, nonvoc or ids like 1,2")
    parser.add_argument("--max_masks_per_class", type=int, default=5000)
    parser.add_argument("--num_restarts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    """Writes the prior file; returns the exit code (2 on bad flags or data)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        for name in ("num_classes", "num_clusters", "prior_size", "max_masks_per_class"):
            if getattr(args, name) < 1:
                raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
        from detection.ops import class_splits

        class_ids = class_splits.split_category_ids(args.classes, "--classes")
        files = sorted({f for p in args.file_pattern.split(",") for f in glob.glob(p.strip())})
        if not files:
            raise UsageError(f"--file_pattern={args.file_pattern!r} matches no file")
        priors, counts = build_priors(
            files,
            args.num_classes,
            args.num_clusters,
            args.prior_size,
            class_agnostic=args.class_agnostic,
            class_ids=None if class_ids is None else set(class_ids),
            max_masks_per_class=args.max_masks_per_class,
            seed=args.seed,
            num_restarts=args.num_restarts,
        )
        with open(args.output_path, "wb") as f:
            np.save(f, priors)
    except (UsageError, ValueError, OSError) as error:
        print(f"{PROG}: error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return exit_codes.USAGE
    rows = {row: count for row, count in enumerate(counts) if count}
    print(f"{args.output_path}: priors {list(priors.shape)} from masks per row {rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
