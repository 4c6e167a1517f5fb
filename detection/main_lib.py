"""The command line: `python main.py --model=retinanet --mode=train --model_dir=DIR ...`.

Flags say *where* (model_dir, TPU, config files, override, mode); everything about the
experiment lives in the params tree. Every user error (bad flag, file, key, value, data file,
model_dir) ends the process with exit code 2 and one line on stderr, never a traceback (exit
codes: `detection.cli`).
"""

import sys

from detection import cli
from detection.cli import EXIT_USAGE, OneLineParser, UsageError
from detection.configs import factory as config_factory
from detection.configs import loader
from detection.core import modes, strategies
from detection.hyperparameters import ParamsError

__all__ = ["EXIT_USAGE", "OneLineParser", "UsageError", "add_params_flags", "main", "run"]


def add_params_flags(parser):
    """Adds --model, --config_file and --params_override: how every tool finds its params."""
    parser.add_argument(
        "--model",
        choices=config_factory.MODELS,
        default=None,
        help="model type; defaults to the `type` key of the config files",
    )
    parser.add_argument(
        "--config_file",
        action="append",
        default=[],
        help="YAML file of parameters; repeatable, applied in order",
    )
    parser.add_argument(
        "--params_override",
        action="append",
        default=[],
        help="inline YAML/JSON, 'a.b=1,c.d=[1,2]', or a YAML file; applied after the config "
        "files; repeatable, applied in order",
    )


def build_parser():
    parser = OneLineParser(
        prog="main.py",
        allow_abbrev=False,
        description="Train and evaluate detection and classification models.",
    )
    add_params_flags(parser)
    parser.add_argument("--mode", choices=modes.RUN_MODES, default=modes.TRAIN)
    parser.add_argument(
        "--model_dir", default=None, help="where checkpoints, summaries and params.yaml go"
    )
    parser.add_argument(
        "--tpu", default=None, help="TPU name or grpc:// address; 'local' on a TPU VM"
    )
    parser.add_argument("--tpu_zone", default=None)
    parser.add_argument("--gcp_project", default=None)
    parser.add_argument(
        "--num_cores",
        type=int,
        default=None,
        help="TPU: expected number of cores (checked); CPU mirrored: number of "
        "logical CPU devices to create",
    )
    parser.add_argument(
        "--strategy_type",
        choices=strategies.STRATEGY_TYPES,
        default=None,
        help="default: tpu when --tpu is set, mirrored when --num_gpus > 1, else one_device",
    )
    parser.add_argument("--num_gpus", type=int, default=0)
    parser.add_argument(
        "--eval_after_training",
        action="store_true",
        help="with --mode=train, evaluate the final checkpoint",
    )
    parser.add_argument(
        "--print_config", action="store_true", help="print the resolved params as YAML and exit"
    )
    return parser


def resolve_strategy_type(args):
    if args.strategy_type:
        if args.strategy_type == strategies.TPU and not args.tpu:
            raise UsageError("--strategy_type=tpu needs --tpu (a TPU name, or 'local')")
        return args.strategy_type
    if args.tpu:
        return strategies.TPU
    if args.num_gpus > 1 or (args.num_cores or 0) > 1:
        return strategies.MIRRORED
    return strategies.ONE_DEVICE


def resolve_params(args):
    """Loads the params of this run (raises ParamsError on any bad key or value)."""
    extra = {"model_dir": args.model_dir} if args.model_dir else None
    return loader.load_params(args.model, args.config_file, args.params_override, extra)


def run(argv=None):
    """Entry point of `main.py` and the `detection-main` console script. Returns an exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        if args.num_gpus < 0 or (args.num_cores is not None and args.num_cores < 1):
            raise UsageError("--num_gpus must be >= 0 and --num_cores >= 1")
        if args.eval_after_training and args.mode != modes.TRAIN:
            raise UsageError(
                f"--eval_after_training only applies to --mode=train, not --mode={args.mode}"
            )
        params = resolve_params(args)
        if args.print_config:
            sys.stdout.write(params.to_yaml())
            return 0
        if not params.model_dir:
            raise UsageError(f"--mode={args.mode} needs --model_dir (or model_dir in params)")
        strategy_type = resolve_strategy_type(args)
        cli.quiet_tensorflow()
        from detection import experiment  # Heavy (TensorFlow); not needed to print config.

        return experiment.run_experiment(
            params,
            mode=args.mode,
            strategy_type=strategy_type,
            tpu=args.tpu,
            tpu_zone=args.tpu_zone,
            gcp_project=args.gcp_project,
            num_gpus=args.num_gpus,
            num_cores=args.num_cores,
            eval_after_training=args.eval_after_training,
        )
    except (UsageError, ParamsError) as error:
        cli.print_error("main.py", error)
        return EXIT_USAGE


def main():
    """`python main.py`: `run` with C/C++ library chatter kept off stderr (see cli)."""
    with cli.native_stderr_to_file():
        code = run()
    sys.exit(code)
