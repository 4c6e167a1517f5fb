"""What every command-line entry point shares: exit codes, one-line errors, quiet TensorFlow.

Exit codes (main.py and every tool):
  0    done.
  2    bad input: a flag, config, parameter, data file or model_dir. One line on stderr that
       names it, `<prog>: error: <message>`, never a traceback.
  3    training diverged (NaN/Inf loss; the message names the step).
  143  preempted by SIGTERM after saving a checkpoint (128 + SIGTERM), so schedulers restart.
  1    a bug: an uncaught exception, whose traceback is what to report.

TensorFlow's C++ runtime prints start-up lines on stderr (oneDNN notices, CPU features, the
absl pre-initialization warning) before any error of ours, and C++ log lines while running
(libjpeg's complaints about the very image an error of ours then names). `quiet_tensorflow()`
keeps them out, so that the error is the line a user reads; `DETECTION_TF_LOGS=1`, or setting
`TF_CPP_MIN_LOG_LEVEL` yourself, brings them back. Fatal C++ errors are always printed.
Libraries that write to the stderr file descriptor directly (libjpeg: "Bogus Huffman table
definition") are diverted for the run of main.py by `native_stderr_to_file`.
"""

import argparse
import contextlib
import difflib
import logging
import os
import re
import sys
import tempfile

from detection.core import exit_codes

# The codes under the names the command-line modules use (one definition: core.exit_codes).
EXIT_OK = exit_codes.OK
EXIT_USAGE = exit_codes.USAGE
EXIT_DIVERGED = exit_codes.DIVERGED
EXIT_PREEMPTED = exit_codes.PREEMPTED

TF_LOGS_ENV = "DETECTION_TF_LOGS"
_MAX_MESSAGE_CHARS = 600
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class UsageError(Exception):
    """A bad flag, flag combination or input file; printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports errors as one line (with close matches) and exit code 2.

    An unknown flag is reported before missing required ones (argparse's order is the
    reverse), since a misspelled required flag is the usual cause of both.
    """

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        known = {option for action in self._actions for option in action.option_strings}
        unknown = [
            arg
            for arg in args
            if arg.startswith("--") and arg != "--" and arg.split("=", 1)[0] not in known
        ]
        if unknown:
            self.error("unrecognized arguments: " + " ".join(unknown))
        return super().parse_known_args(args, namespace)

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            known = [a for action in self._actions for a in action.option_strings]
            unknown = message.split(":", 1)[1].split()
            hints = []
            for arg in unknown:
                name = arg.split("=", 1)[0]
                close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
                if close:
                    hints.append(f"{name}: did you mean {' or '.join(close)}?")
            if hints:
                message += " (" + "; ".join(hints) + ")"
        raise UsageError(message)


def one_line(message):
    """The first informative line of `message` (an exception or text), at most 600 characters.

    Keras wraps errors raised in a layer's `call` in "Exception encountered when calling ...";
    the line after it is the actual message.
    """
    text = message if isinstance(message, str) else _exception_text(message)
    text = _ANSI_ESCAPE.sub("", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        lines = lines[1:]
    line = lines[0] if lines else (type(message).__name__ if not isinstance(message, str) else "")
    if len(line) > _MAX_MESSAGE_CHARS:
        line = line[: _MAX_MESSAGE_CHARS - 3] + "..."
    return line


def _exception_text(error):
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])  # str(KeyError) adds quotes.
    return getattr(error, "message", None) or str(error)


def print_error(prog, message):
    """Prints `<prog>: error: <one line>` on stderr."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)


def _quiet():
    return os.environ.get(TF_LOGS_ENV, "") in ("", "0") and "TF_CPP_MIN_LOG_LEVEL" not in (
        os.environ
    )


def quiet_tensorflow():
    """Imports TensorFlow without its C++ start-up lines on stderr (unless asked for).

    Call it in an entry point before anything imports TensorFlow. Unless `DETECTION_TF_LOGS=1`
    or `TF_CPP_MIN_LOG_LEVEL` is set, sets `TF_CPP_MIN_LOG_LEVEL=3` (only fatal C++ errors)
    and imports TensorFlow with the stderr file descriptor sent to a temporary file: the
    lines printed during the import come before that level takes effect. If the import fails,
    what it printed is replayed to stderr before the exception propagates.
    """
    if not _quiet():
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401  (the import is the point)
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def native_stderr_to_file():
    """Within the block, C/C++ writes to stderr go to a file; Python's still reach stderr.

    For a process's main function only (it swaps the stderr file descriptor and
    `sys.stderr`). The file, `$TMPDIR/detection-native-stderr-<pid>.log`, is removed when the
    block ends; if it ends with an exception, what it holds is first copied to stderr, so a
    traceback keeps its context. After a hard crash (a fatal C++ error) it stays on disk.
    Does nothing when TensorFlow's logs were asked for (`DETECTION_TF_LOGS=1`).
    """
    if not _quiet():
        yield None
        return
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.dup(2)
    path = os.path.join(tempfile.gettempdir(), f"detection-native-stderr-{os.getpid()}.log")
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    python_stderr = sys.stderr
    sys.stderr = open(  # noqa: SIM115  (closed below; it must outlive this statement)
        terminal, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False
    )
    try:
        yield path
    except Exception:
        with open(path, "rb") as native:
            sys.stderr.write(native.read().decode("utf-8", "replace"))
        raise
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(terminal, 2)
        os.close(terminal)
        os.remove(path)


def configure_logging():
    """INFO lines on stdout, warnings and errors on stderr; the executor's INFO shown.

    The executor logs through Python's logging under "detection"; its INFO lines ("resumed
    from ckpt-N at step N", "saved checkpoint ...") are part of the default output, beside
    the progress lines on stdout. stderr then carries only what needs attention: on bad
    input, the one error line. A process that configured logging itself is left alone.
    """
    logging.getLogger("detection").setLevel(logging.INFO)
    root = logging.getLogger()
    if root.handlers:
        return
    formatter = logging.Formatter("%(levelname)s:%(name)s:%(message)s")
    info = logging.StreamHandler(sys.stdout)
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    for handler in (info, problems):
        handler.setFormatter(formatter)
        root.addHandler(handler)
