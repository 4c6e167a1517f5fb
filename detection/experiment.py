"""Running an experiment from the command line: params -> strategy -> model fn -> executor.

Exit codes: 0 done; 2 bad input (flags, params, data files); 3 the training diverged (NaN/Inf
loss, the message names the step); 143 preempted by SIGTERM after saving a checkpoint (the
conventional 128 + SIGTERM, so job schedulers restart the job, which then resumes). 1 is left
to Python itself: an uncaught exception is a bug, and its traceback is what to report.
"""

import logging as python_logging
import sys

from absl import logging

EXIT_DIVERGED = 3
EXIT_USAGE = 2
EXIT_PREEMPTED = 143


def _error(message, code):
    print(f"main.py: error: {message}", file=sys.stderr)
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
    from detection.executor import distribution, preemption, runner, trainer
    from detection.hyperparameters import ParamsError
    from detection.modeling import factory as model_factory

    logging.set_verbosity(logging.INFO)
    # The executor logs through Python's logging under "detection"; its INFO lines ("resumed
    # from ckpt-N at step N", "saved checkpoint ...") are part of the default output.
    python_logging.getLogger("detection").setLevel(python_logging.INFO)
    if not python_logging.getLogger().handlers:
        python_logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")
    try:
        strategy = distribution.build_strategy(
            strategy_type,
            tpu=tpu,
            tpu_zone=tpu_zone,
            gcp_project=gcp_project,
            num_gpus=num_gpus,
            num_cores=num_cores,
        )
        model_fn = model_factory.model_fn_from_params(params)
        result = runner.run(mode, model_fn, params, params.model_dir, strategy)
        if mode == "train" and eval_after_training:
            result = runner.run("eval", model_fn, params, params.model_dir, strategy)
    except trainer.NonFiniteLossError as error:
        return _error(str(error), EXIT_DIVERGED)
    except preemption.TrainingPreempted as error:
        return _error(str(error), EXIT_PREEMPTED)
    except (ParamsError, ValueError, FileNotFoundError) as error:
        # Bad params or data (an unmatched file pattern, an indivisible batch...): the
        # messages name the key, value or file, so one line is what the user needs.
        return _error(str(error).strip().splitlines()[0], EXIT_USAGE)
    logging.info("%s finished: %s", mode, result)
    return 0
