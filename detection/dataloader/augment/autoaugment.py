"""AutoAugment for object detection (Zoph et al. 2019): the entry point.

    policy = autoaugment.build_policy("v0")
    image, boxes, masks, indices = policy(image, boxes, masks=None)
    classes = tf.gather(classes, indices)

Per image, one sub-policy of the named policy is drawn uniformly and its ops run in order,
each with its probability (see detection_ops for what each op moves). Boxes that a geometric
op pushes out of the image (zero height or width after clipping to [0, 1]) are dropped with
their masks; `indices` tells which input rows remain, so the caller gathers its other
per-instance tensors (classes, is_crowd, ...). Input boxes that are already degenerate are
dropped too. No op is refused when masks are given: geometric ops (also inside boxes) move
the masks exactly as the image pixels; colour ops and cutouts leave them as they are.

Everything is TF ops with static rank (no py_function, no PIL), so a policy runs inside
`tf.data.Dataset.map`; every random draw is stateless, derived from one per-call seed.
"""

import tensorflow as tf

from detection.dataloader.augment import detection_ops
from detection.dataloader.augment import magnitudes
from detection.dataloader.augment import policies
from detection.dataloader.augment import sample as sample_lib
from detection.dataloader.augment import seeds

Sample = sample_lib.Sample


def _check_sub_policies(name, sub_policies):
    if not sub_policies:
        raise ValueError(f"AutoAugment policy {name!r} has no sub-policies")
    for sub_policy in sub_policies:
        for op_name, probability, level in sub_policy:
            if op_name not in detection_ops.OPS:
                raise ValueError(
                    f"AutoAugment policy {name!r}: unknown op {op_name!r}; known ops: "
                    f"{', '.join(sorted(detection_ops.OPS))}"
                )
            if not 0.0 <= probability <= 1.0 or not 0 <= level <= magnitudes.MAX_LEVEL:
                raise ValueError(
                    f"AutoAugment policy {name!r}: op {op_name!r} needs probability in [0, 1] "
                    f"and magnitude in [0, {magnitudes.MAX_LEVEL:g}], got {probability}, {level}"
                )


class DetectionPolicy:
    """Callable (image, boxes, masks=None, seed=None) -> Sample(image, boxes, masks, indices).

    Args of the call:
      image: [h, w, 3] uint8 (h, w may be dynamic).
      boxes: [n, 4] normalized [ymin, xmin, ymax, xmax] (n may be dynamic and 0).
      masks: optional [n, h, w] instance masks (uint8 or float).
      seed: optional [2] int32/int64 seed making this call deterministic; by default each
        call draws one from the stateful RNG (reproducible per pipeline with the
        constructor's `seed`).

    Returns of the call (a `Sample`, unpackable as a 4-tuple):
      image: [h, w, 3] uint8, the static shape of the input.
      boxes: [m, 4] float32 normalized, inside [0, 1], none degenerate, m <= n.
      masks: [m, h, w] input dtype, or None without masks.
      indices: [m] int32, increasing: rows of the input kept, in order.
    """

    def __init__(self, sub_policies, constants=magnitudes.DETECTION_CONSTANTS, seed=None, name=""):
        """Builds the policy.

        Args:
          sub_policies: sequence of sub-policies, each a sequence of
            (op name, probability, magnitude 0..10); see policies.POLICIES.
          constants: magnitudes.Constants, the pixel scales of the magnitudes.
          seed: optional Python int, op seed of the per-call seeds.
          name: for error messages.
        """
        _check_sub_policies(name, sub_policies)
        self.name = name
        self._sub_policies = tuple(tuple(sub) for sub in sub_policies)
        self._constants = constants
        self._seed = seed

    def _run(self, sub_policy, seed, sample):
        for position, (op_name, probability, level) in enumerate(sub_policy):
            op_seed = seeds.child(seed, position + 1)
            sample = detection_ops.OPS[op_name](
                sample, probability, level, op_seed, self._constants
            )
        return sample

    # Plain TF ops only: AutoGraph conversion (tf.data.map applies it) would only cost time.
    @tf.autograph.experimental.do_not_convert
    def __call__(self, image, boxes, masks=None, seed=None):
        inputs = sample_lib.from_inputs(image, boxes, masks)
        if seed is None:
            seed = seeds.per_call_seed(self._seed)
        branches = [lambda s, sub=sub: self._run(sub, seed, s) for sub in self._sub_policies]
        if len(branches) == 1:
            sample = branches[0](inputs)
        else:
            choice = seeds.uniform_int(seeds.child(seed, 0), 0, len(branches))
            sample = sample_lib.switch(choice, branches, inputs)
        return sample_lib.with_static_shapes(sample, inputs)


def build_policy(name, seed=None, constants=magnitudes.DETECTION_CONSTANTS):
    """The named AutoAugment detection policy: 'v0', 'v1', 'v2', 'v3' or 'test'.

    Raises:
      ValueError: for an unknown name (the message lists the known ones).
    """
    if name not in policies.POLICIES:
        raise ValueError(
            f"unknown AutoAugment policy {name!r}; expected one of "
            f"{', '.join(repr(p) for p in policies.POLICIES)}"
        )
    return DetectionPolicy(policies.POLICIES[name], constants=constants, seed=seed, name=name)
