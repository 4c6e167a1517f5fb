"""SIGTERM as a request to checkpoint and stop (preemptible TPUs/VMs send it before killing).

The handler only sets a flag: saving inside a signal handler could interleave with a running
step or a half-written checkpoint. The trainer checks the flag at each host-loop boundary,
saves, and raises `TrainingPreempted`.
"""

import logging
import signal
import threading

_log = logging.getLogger(__name__)


class TrainingPreempted(Exception):
    """Training stopped on SIGTERM after saving a checkpoint; exit non-zero and restart."""


class SigtermWatcher:
    """Context manager that turns SIGTERM into `requested = True` while active."""

    def __init__(self):
        self.requested = False
        self._previous = None
        self._installed = False

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        else:
            _log.warning("training outside the main thread: SIGTERM will not trigger a checkpoint")
        return self

    def __exit__(self, *exc_info):
        if self._installed:
            previous = signal.SIG_DFL if self._previous is None else self._previous
            signal.signal(signal.SIGTERM, previous)
            self._installed = False
        return False
