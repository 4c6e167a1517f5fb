"""Running an experiment from the command line: params -> strategy -> model fn -> executor.

Exit codes (`detection.cli`): 0 done; 2 bad input (flags, params, data files, model_dir and
its checkpoints); 3 the training diverged (NaN/Inf loss, the message names the step); 143
preempted by SIGTERM after saving a checkpoint (the conventional 128 + SIGTERM, so job
schedulers restart the job, which then resumes). 1 is left to Python itself: an uncaught
exception is a bug, and its traceback is what to report.
"""

import logging

from detection import cli
from detection.cli import EXIT_DIVERGED, EXIT_PREEMPTED, EXIT_USAGE
from detection.core import modes

_log = logging.getLogger(__name__)


def _error(message, code):
    cli.print_error("main.py", message)
    return code


def run_experiment(
    params,
    mode,
    strategy_type,
    tpu=None,
    tpu_zone=None,
    gcp_project=None,
    num_gpus=0,
    num_cores=None,
    eval_after_training=False,
):
    """Runs `mode` for the model `params.type`; returns a process exit code."""
    # TensorFlow is imported here so that `--print_config` and flag errors stay instant.
    import tensorflow as tf

    from detection.dataloader import record_errors
    from detection.executor import distribution, preemption, runner, trainer
    from detection.hyperparameters import ParamsError
    from detection.model_fns import factory as model_fn_factory

    cli.configure_logging()
    try:
        strategy = distribution.build_strategy(
            strategy_type,
            tpu=tpu,
            tpu_zone=tpu_zone,
            gcp_project=gcp_project,
            num_gpus=num_gpus,
            num_cores=num_cores,
        )
        model_fn = model_fn_factory.model_fn_from_params(params)
        result = runner.run(mode, model_fn, params, params.model_dir, strategy)
        if mode == modes.TRAIN and eval_after_training:
            result = runner.run(modes.EVAL, model_fn, params, params.model_dir, strategy)
    except trainer.NonFiniteLossError as error:
        return _error(str(error), EXIT_DIVERGED)
    except preemption.TrainingPreempted as error:
        return _error(str(error), EXIT_PREEMPTED)
    except UnicodeDecodeError as error:
        # TensorFlow raises this for an op error quoting binary data: a record that is not a
        # tf.Example. Else it is a file that is not text: one line either way.
        num_classes = params.architecture.get("num_classes")
        return _error(record_errors.data_error_message(error, num_classes) or error, EXIT_USAGE)
    except (ParamsError, ValueError, FileNotFoundError) as error:
        # Bad params or data (an unmatched file pattern, an indivisible batch, unreadable
        # checkpoints...): the messages name the key, value or file.
        return _error(error, EXIT_USAGE)
    except tf.errors.OpError as error:
        # Raised while iterating an input pipeline: a bad file or record (named), or a bug.
        num_classes = params.architecture.get("num_classes")
        message = record_errors.data_error_message(error, num_classes)
        if message is None:
            raise
        return _error(message, EXIT_USAGE)
    _log.info("%s finished: %s", mode, result)
    return 0
