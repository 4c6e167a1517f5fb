"""Which checkpoints a model_dir holds, read from its files rather than trusted to one of them.

The `checkpoint` state file names the newest checkpoint, but it can disagree with the disk: a
copy that missed the `ckpt-*` files, files deleted by hand, a state file lost or never copied.
Training from scratch in any of those cases would overwrite the run's checkpoints, so resuming
looks at both: every checkpoint the state file lists and every `ckpt-<step>` on disk, newest
first. A model_dir with neither is a fresh run.
"""

import dataclasses
import os
import re

import tensorflow as tf

CHECKPOINT_NAME = "ckpt"
STATE_FILE = "checkpoint"
_STEP_PATTERN = re.compile(r"-(\d+)$")
_FILE_PATTERN = re.compile(r"^" + CHECKPOINT_NAME + r"-(\d+)\.(?:index|data-\d+-of-\d+)$")
_STATE_LINE = re.compile(
    r"^\s*(model_checkpoint_path|all_model_checkpoint_paths|"
    r"all_model_checkpoint_timestamps|last_preserved_timestamp)\s*:\s*(.*?)\s*$"
)


class CheckpointError(ValueError):
    """A checkpoint of model_dir cannot be used; the message names the file and the reason."""


def step_of(checkpoint_path):
    """The global step of `.../ckpt-<step>`; None for another naming."""
    match = _STEP_PATTERN.search(checkpoint_path)
    return int(match.group(1)) if match else None


def _read_state_file(model_dir):
    """Paths the state file lists (newest last), or [] without a state file.

    Parsed by hand: TensorFlow's reader logs and ignores a malformed file, and raises on an
    empty one, and either would make a damaged run look fresh.

    Raises:
      CheckpointError: the state file exists but is not a checkpoint state.
    """
    path = os.path.join(model_dir, STATE_FILE)
    if not tf.io.gfile.exists(path):
        return []
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (tf.errors.OpError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read {path}: {first_line(error)}") from None
    latest, listed = None, []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _STATE_LINE.match(line)
        if not match:
            raise CheckpointError(
                f"{path} is not a checkpoint state file (line {number}: {line.strip()[:60]!r}); "
                "repair or remove it (the ckpt-* files beside it are kept)"
            )
        key, value = match.groups()
        if key in ("model_checkpoint_path", "all_model_checkpoint_paths"):
            if len(value) < 2 or value[0] != '"' or value[-1] != '"':
                raise CheckpointError(f"{path} line {number}: {key} is not a quoted path")
            value = value[1:-1]
            value = (
                value if os.path.isabs(value) or "://" in value else os.path.join(model_dir, value)
            )
            if key == "model_checkpoint_path":
                latest = value
            else:
                listed.append(value)
    if latest is None:
        raise CheckpointError(
            f"{path} names no checkpoint (empty or damaged); repair or remove it (the ckpt-* "
            "files beside it are kept)"
        )
    return [p for p in listed if p != latest] + [latest]


def first_line(error):
    """The first non-empty line of an exception's message (at most 300 characters)."""
    text = getattr(error, "message", None) or str(error)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A checkpoint that model_dir names or holds.

    Attributes:
      path: the checkpoint prefix (`model_dir/ckpt-<step>`).
      step: the global step in its name (None for another naming).
      listed: named by the state file.
    """

    path: str
    step: int | None
    listed: bool

    @property
    def name(self):
        return os.path.basename(self.path)


def candidates(model_dir):
    """Every checkpoint of `model_dir`, newest (highest step) first.

    Raises:
      CheckpointError: the state file is damaged.
    """
    listed = _read_state_file(model_dir)
    found = {}
    for order, path in enumerate(listed):
        found[path] = (step_of(path), order)
    pattern = os.path.join(model_dir, CHECKPOINT_NAME + "-*")
    for path in tf.io.gfile.glob(pattern):
        match = _FILE_PATTERN.match(os.path.basename(path))
        if match:
            prefix = os.path.join(model_dir, f"{CHECKPOINT_NAME}-{match.group(1)}")
            found.setdefault(prefix, (int(match.group(1)), -1))
    ordered = sorted(
        found.items(), key=lambda item: (-1 if item[1][0] is None else item[1][0], item[1][1])
    )
    return [Candidate(path, step, order >= 0) for path, (step, order) in reversed(ordered)]


def missing_files(candidate):
    """Why the files of `candidate` cannot be read (None if they look complete)."""
    index = candidate.path + ".index"
    if not tf.io.gfile.exists(index):
        return f"{candidate.name}.index is missing"
    try:
        reader = tf.train.load_checkpoint(candidate.path)
        del reader
    except (tf.errors.OpError, ValueError) as error:
        return f"{candidate.name}.index is unreadable ({first_line(error)})"
    if not tf.io.gfile.glob(candidate.path + ".data-*"):
        return f"{candidate.name}.data-* is missing"
    return None
