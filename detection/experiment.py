"""Running an experiment: params -> model_fn -> executor, for the command line."""

from detection.main_lib import UsageError


def run_experiment(params, mode, strategy_type, tpu=None, tpu_zone=None, gcp_project=None,
                   num_gpus=0, num_cores=None, eval_after_training=False):
    """Runs `mode` for the model `params.type`; returns a process exit code."""
    raise UsageError(f"--mode={mode} for model '{params.type}' is not available yet: the "
                     "executor and model pieces have not landed (use --print_config)")
