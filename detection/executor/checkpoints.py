"""Training checkpoints in model_dir: save, resume, and find the step of a checkpoint.

A checkpoint holds every model variable, keyed by its unique Keras path
(`model/resnet.Sstem_conv.Sconv.Skernel`, `.S` escaping `/`), and the optimizer (slots and
`iterations`, which *is* the global step: the learning-rate schedule reads it). Files are `model_dir/ckpt-<step>`; the checkpoint
number is the global step, so a path says its step.

Saving never leaves an unreadable checkpoint: TensorFlow writes a checkpoint's shards to a
temporary name, merges them into the final `ckpt-<step>.index/.data-*`, and only then rewrites
the `checkpoint` state file (atomically, by rename). A process killed mid-save leaves at most a
stray temporary directory. Files can still go missing or get damaged afterwards (copies, disks,
hands), so resuming tries every checkpoint of model_dir newest first and skips unreadable ones
(`checkpoint_files`); a model_dir whose checkpoints are all unreadable is an error, never a
fresh start that would overwrite them.

Multi-worker: every worker must take part in a save (variables may need collectives), but only
the chief's copy is kept; the others write to `model_dir/worker_tmp/<task>` and delete it.
All workers resume from the chief's latest checkpoint.
"""

import logging
import os

import tensorflow as tf

from detection.executor import checkpoint_files
from detection.executor import distribution
from detection.executor.checkpoint_files import (
    CHECKPOINT_NAME,
    CheckpointError,
    first_line,
    step_of,
)

# How a damaged checkpoint fails to restore: TensorFlow's read errors, and IndexError ("Read
# less bytes than requested") from the Python side of a truncated data file.
_UNREADABLE = (tf.errors.OpError, IndexError, OSError)

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "Checkpointer",
    "checkpoint_paths",
    "first_line",
    "model_variables",
    "restore_model",
    "step_of",
]

_log = logging.getLogger(__name__)


def model_variables(model):
    """{variable path below the model: variable} for every variable of `model`.

    Checkpoints track this dict rather than the model object: Keras 3 layers kept in Python
    lists or dicts (FPN levels, head subnets) are not children in TensorFlow's object graph,
    so an object-based `Checkpoint(model=model)` silently misses their variables - batch norm
    statistics included. Paths also make checkpoints readable and stable across refactors
    that keep layer names. The model's own name is dropped from the path, because Keras
    uniquifies auto-generated model names within a process (`model_1/...`).

    Raises:
      ValueError: two variables share a path (the model must name its layers uniquely).
    """
    variables = {}
    root = model.name + "/"
    for variable in model.variables:
        key = variable.path[len(root) :] if variable.path.startswith(root) else variable.path
        if key in variables:
            raise ValueError(
                f"two model variables share the path {variable.path!r}; give "
                "their layers distinct names"
            )
        variables[key] = variable
    return variables


def restore_model(model, checkpoint_path):
    """Restores every variable of `model` from a checkpoint of this executor.

    Raises:
      tf.errors.NotFoundError: the checkpoint's index is gone (deleted by the trainer's
        `max_to_keep` while an evaluator waited for it).
      CheckpointError: the checkpoint is unreadable (truncated, damaged, data missing), or a
        model variable is missing from it (another architecture).
    """
    checkpoint = tf.train.Checkpoint(model=model_variables(model))
    if not tf.io.gfile.exists(checkpoint_path + ".index"):
        raise tf.errors.NotFoundError(None, None, f"{checkpoint_path}.index does not exist")
    # The optimizer's slots are not needed here; expect_partial also keeps TensorFlow from
    # logging every unrestored slot when the status is garbage collected.
    try:
        status = checkpoint.restore(checkpoint_path).expect_partial()
        status.assert_existing_objects_matched()
    except _UNREADABLE as error:
        raise CheckpointError(
            f"checkpoint {checkpoint_path} is unreadable: {checkpoint_files.first_line(error)}"
        ) from None
    except (AssertionError, ValueError) as error:  # ValueError: a variable's shape differs.
        raise CheckpointError(
            f"{checkpoint_path} does not hold this model's variables: "
            f"{checkpoint_files.first_line(error)}"
        ) from None


def resolve_checkpoint_path(path):
    """The checkpoint that `path` names: itself, or the latest one of a training directory.

    Args:
      path: a checkpoint prefix (`model_dir/ckpt-800`) or a directory with a `checkpoint`
        state file.

    Raises:
      FileNotFoundError: a directory without checkpoints, or a prefix without `.index` file.
    """
    resolved = tf.train.latest_checkpoint(path) if tf.io.gfile.isdir(path) else path
    if not resolved:
        raise FileNotFoundError(f"no checkpoint found in {path}")
    if not tf.io.gfile.exists(resolved + ".index"):
        raise FileNotFoundError(
            f"{resolved} is neither a directory nor a checkpoint ({resolved}.index does not exist)"
        )
    return resolved


def checkpoint_paths(model_dir):
    """All checkpoints the state file of `model_dir` lists, oldest first."""
    state = tf.train.get_checkpoint_state(model_dir)
    return list(state.all_model_checkpoint_paths) if state else []


class Checkpointer:
    """Saves and restores (model, optimizer) in `model_dir`."""

    def __init__(self, strategy, model, optimizer, model_dir, max_to_keep):
        """Args:
        strategy: the run's strategy (decides chief / worker directories).
        model: keras.Model.
        optimizer: the built optimizer (slots must exist before `restore_latest`).
        model_dir: directory of the run.
        max_to_keep: checkpoints kept in model_dir (older ones are deleted).
        """
        self.checkpoint = tf.train.Checkpoint(model=model_variables(model), optimizer=optimizer)
        self._optimizer = optimizer
        self._model_dir = model_dir
        # Read before the CheckpointManager, which raises on an empty state file and treats a
        # damaged one as absent.
        self._candidates = checkpoint_files.candidates(model_dir)
        self._latest = None
        self._is_chief = distribution.is_chief(strategy)
        if self._is_chief:
            self._directory = model_dir
        else:
            self._directory = os.path.join(
                model_dir, "worker_tmp", str(distribution.task_id(strategy))
            )
        self._manager = tf.train.CheckpointManager(
            self.checkpoint,
            self._directory,
            max_to_keep=max_to_keep if self._is_chief else 1,
            checkpoint_name=CHECKPOINT_NAME,
        )
        self._last_saved_step = None

    @property
    def step(self):
        """The global step (the optimizer's iteration count)."""
        return int(self._optimizer.iterations.numpy())

    def latest(self):
        """Path of the newest good checkpoint of this run in model_dir, or None."""
        return self._latest

    def _try_restore(self, candidate):
        """Restores `candidate`; returns why it is unreadable, or None once restored.

        Raises:
          CheckpointError: the checkpoint is readable but is not of this model and optimizer.
        """
        problem = checkpoint_files.missing_files(candidate)
        if problem is not None:
            return problem
        try:
            self.checkpoint.restore(candidate.path).assert_existing_objects_matched()
        except _UNREADABLE as error:
            return f"{candidate.name} is unreadable ({checkpoint_files.first_line(error)})"
        except (AssertionError, ValueError) as error:
            raise CheckpointError(
                f"cannot resume from {candidate.path}: it does not match this model and "
                f"optimizer (changed architecture or optimizer?): "
                f"{checkpoint_files.first_line(error)}"
            ) from None
        return None

    def restore_latest(self):
        """Restores the newest readable checkpoint of model_dir.

        Checkpoints the state file lists and `ckpt-<step>` files on disk are tried newest
        first; unreadable ones (missing, truncated, damaged files) are skipped with a warning.

        Returns:
          The restored checkpoint's path, or None when model_dir holds no checkpoint at all
          (a fresh run).

        Raises:
          CheckpointError: model_dir holds checkpoints but none is readable (training from
            scratch would overwrite them), or the newest readable one belongs to another model.
        """
        if not self._candidates:
            return None
        problems = []
        for candidate in self._candidates:
            problem = self._try_restore(candidate)
            if problem is None:
                break
            problems.append(problem)
            _log.warning("cannot resume from %s: %s", candidate.path, problem)
        else:
            raise CheckpointError(
                f"{self._model_dir} holds checkpoints but none can be restored ("
                + "; ".join(problems)
                + "); move them away to train from scratch"
            )
        self._last_saved_step = self.step
        self._latest = candidate.path
        _log.info("resumed from %s at step %d", candidate.name, self.step)
        return candidate.path

    def save(self):
        """Saves at the current step (no-op if this step is already saved); returns the path."""
        step = self.step
        if step == self._last_saved_step:
            return None
        path = self._manager.save(checkpoint_number=step)
        self._last_saved_step = step
        self._latest = os.path.join(self._model_dir, f"{CHECKPOINT_NAME}-{step}")
        if self._is_chief:
            _log.info("saved checkpoint %s", path)
        else:
            tf.io.gfile.rmtree(self._directory)
        return path
