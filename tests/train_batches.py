"""Picking a train batch in which every image has an object (importable from any test, as
numpy_references).

Shapes images hold 0-4 objects and scale jitter can crop them out; the training shuffle
follows whatever global seed earlier tests in the same process left behind. A test that needs
every loss and every head's gradient active takes the first batch with an object in every
image instead of the first batch.
"""

import numpy as np


def first_batch_with_objects(dataset, objects_per_image, what, limit=50):
    """The first `(features, labels)` of `dataset` with objects in every image.

    Args:
      dataset: a batched `(features, labels)` dataset.
      objects_per_image: `labels -> [batch]` array, > 0 where an image has an object.
      what: what is counted, for the error message (e.g. "a positive anchor").
      limit: batches to look at.

    Raises:
      AssertionError: none of the first `limit` batches qualifies.
    """
    batches = iter(dataset)
    for _ in range(limit):
        batch = next(batches)
        if np.all(np.asarray(objects_per_image(batch[1])) > 0):
            return batch
    raise AssertionError(f"no train batch of {limit} has {what} in every image")
