"""A text stream that hands on what is written to it line by line.

The upscaler prints its warnings to a text stream; a ``--devices`` worker sends each line to the
parent (:mod:`.pool`), a Ray actor keeps them for the image's row (:mod:`.ray_run`).
"""

from __future__ import annotations

from collections.abc import Callable


class LineStream:
    """A text stream calling ``on_line(line)`` (without its newline) for each complete line
    written; a line is handed on when its newline is written."""

    def __init__(self, on_line: Callable[[str], object]) -> None:
        self.on_line, self.buffer = on_line, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.on_line(line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
