"""One job per output folder: an exclusive lock held for the job's life.

``upscale`` takes the lock of its output folder (:data:`LOCK_NAME` in it) before it reads the job
record or writes anything, and holds it until the last image is written. A second job on the same
folder is refused at once (exit 2), naming the holder (process id, machine, start time, command).

The lock is the operating system's (``fcntl.flock`` on Linux and macOS), so it ends with its
process whatever the way it ends, ``kill -9`` included: a lock file left by a dead process is
simply taken over. Where ``flock`` is missing (Windows) the file is created exclusively and a
holder whose process no longer runs on this machine is taken for a stale lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
import time

from .errors import CliError

LOCK_NAME = ".srt_upscale_job.lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        if isinstance(started, (int, float))
        else "?"
    )
    command = holder.get("command") or "?"
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')} since {when}: {command}"


class JobLock:
    """The exclusive lock of one output folder.

    Args:
        folder: the output folder (created if needed).

    Attributes:
        job_id: this job's id (temporary files carry it, so cleanup only touches this job's).
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.job_id = secrets.token_hex(6)
        self._fd: int | None = None

    def _holder_text(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "job": self.job_id,
            "command": " ".join(sys.argv)[:500],
        }

    def _busy(self, holder: dict) -> CliError:
        return CliError(
            "another job is writing to this output folder",
            self.folder,
            f"it is {_describe(holder)}; wait for it to end, or choose another -o",
        )

    def _read_holder(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                found = json.load(f)
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def acquire(self) -> JobLock:
        """Take the lock, or raise :class:`CliError` (exit 2) naming the job that holds it."""
        os.makedirs(self.folder, exist_ok=True)
        if fcntl is None:
            return self._acquire_exclusive()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy(self._read_holder()) from None
            # the file may have been removed by its last holder between our open and our lock
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(self._holder_text()).encode())
        self._fd = fd
        return self

    def _acquire_exclusive(self) -> JobLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read_holder()
                pid = holder.get("pid")
                same_host = holder.get("host") == socket.gethostname()
                if isinstance(pid, int) and same_host and not _alive(pid):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path)  # stale: its process is gone
                    continue
                raise self._busy(holder) from None
            os.write(fd, json.dumps(self._holder_text()).encode())
            self._fd = fd
            return self
        raise self._busy(self._read_holder())

    def release(self) -> None:
        """Remove the lock file and let it go (removed first, while still held: no one else can
        have taken it in between)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)
        os.close(self._fd)  # closing ends the flock
        self._fd = None

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
