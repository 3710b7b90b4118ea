"""How the command line ends on a signal: SIGTERM and SIGHUP behave like Ctrl+C.

``kill``, ``timeout``, SLURM and ``docker stop`` send SIGTERM; a closed terminal sends SIGHUP.
Each raises :class:`Stopped` (a ``KeyboardInterrupt``) in the main thread, so the run stops the
way Ctrl+C stops it: workers are stopped, the write in progress removes its temporary file, the
folder's lock is released, and the command prints one line and exits with 128 + the signal's
number (130 for Ctrl+C, 143 for SIGTERM, 129 for SIGHUP).

Worker processes end with their parent whatever kills it (``kill -9`` included): on Linux the
kernel sends them SIGTERM when it dies (``PR_SET_PDEATHSIG``), elsewhere each watches its parent's
process id.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

SIGINT_EXIT = 128 + signal.SIGINT  # 130
_PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5


class Stopped(KeyboardInterrupt):
    """A stop signal, raised in the main thread like Ctrl+C's ``KeyboardInterrupt``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum, frame) -> None:
    raise Stopped(signum)


def stop_signals() -> list[int]:
    """The signals that stop a run like Ctrl+C (SIGHUP does not exist on Windows)."""
    return [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]


def install() -> None:
    """SIGTERM and SIGHUP raise :class:`Stopped` from now on (main thread only)."""
    for signum in stop_signals():
        signal.signal(signum, _raise)


def exit_code(e: KeyboardInterrupt) -> int:
    """128 + the signal's number: 130 for Ctrl+C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + e.signum if isinstance(e, Stopped) else SIGINT_EXIT


def end_with_parent() -> None:
    """Make this (worker) process get SIGTERM when its parent dies, however it dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
                if os.getppid() == 1:  # the parent died before the call: no signal will come
                    os.kill(os.getpid(), signal.SIGTERM)
                return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(WATCH_SECONDS)
        os.kill(os.getpid(), getattr(signal, "SIGTERM", signal.SIGINT))

    threading.Thread(target=watch, name="srt-parent-watch", daemon=True).start()
