"""Running an experiment from the command line: params -> strategy -> model fn -> executor.

Returns the process exit codes of `detection.core.exit_codes`.
"""

import sys

from absl import logging

from detection.core import exit_codes, modes


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
    from detection.model_fns import factory as model_fn_factory

    logging.set_verbosity(logging.INFO)
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
        return _error(str(error), exit_codes.DIVERGED)
    except preemption.TrainingPreempted as error:
        return _error(str(error), exit_codes.PREEMPTED)
    except (ParamsError, ValueError, FileNotFoundError) as error:
        # Bad params or data (an unmatched file pattern, an indivisible batch...): the
        # messages name the key, value or file, so one line is what the user needs.
        return _error(str(error).strip().splitlines()[0], exit_codes.USAGE)
    logging.info("%s finished: %s", mode, result)
    return 0
