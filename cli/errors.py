"""The command line's one kind of error: what went wrong, with which file, and what to do.

Printed as one line, ``error: <what> (<file>): <what to do>``, never as a traceback.
"""

from __future__ import annotations

USAGE = 2  # exit code: bad arguments or bad input, nothing (or not everything) could be done
PARTIAL = 1  # exit code: some images of a folder failed, the others were written


class CliError(Exception):
    """A user-facing failure.

    Args:
        what: what went wrong ("image not found").
        file: the file, folder or name it concerns.
        todo: what the user can do about it.
        code: the exit code when this ends the run.
    """

    def __init__(self, what: str, file: str, todo: str, code: int = USAGE) -> None:
        super().__init__(f"{what} ({file}): {todo}")
        self.what, self.file, self.todo, self.code = what, file, todo, code


def strip_file_prefix(message: str, file_name: str) -> str:
    """A loader message without its leading ``"<file_name>: "`` (our line names the file already)."""
    prefix = f"{file_name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def first_line(e: BaseException, limit: int = 300) -> str:
    """An exception's first message line (its type name when it has none), at most ``limit`` characters."""
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:limit]
