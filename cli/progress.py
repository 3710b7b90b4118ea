"""A text progress bar on stderr: one step per tile, with the time left.

Drawn in place (carriage return) only when the stream is a terminal, so logs and pipes stay
clean; the summary line after each image is printed by the command, not here.
"""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 24


def clock(seconds: float) -> str:
    """``75.4`` -> ``"1:15"``; hours when needed."""
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TileProgress:
    """``progress(done, total)`` callback for the engine's :class:`Host`, drawing one bar line.

    Args:
        stream: where to draw (stderr).
        label: what is being processed (the image's name).
        enabled: draw at all (the command passes "stderr is a terminal and not --quiet").
        now: the clock (tests pass their own).
    """

    def __init__(self, stream: TextIO, label: str, enabled: bool, now=time.monotonic) -> None:
        self.stream, self.label, self.enabled, self.now = stream, label, enabled, now
        self.start = now()
        self.drawn = False

    def line(self, done: int, total: int) -> str:
        """The bar for ``done`` of ``total`` tiles: ``name [#####-----] 3/8 tiles  38%  0:02, ETA 0:03``."""
        total = max(total, done, 1)
        filled = BAR_WIDTH * done // total
        elapsed = self.now() - self.start
        eta = clock(elapsed / done * (total - done)) if done else "?"
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        return f"{self.label} [{bar}] {done}/{total} tiles {100 * done // total:3d}%  {clock(elapsed)}, ETA {eta}"

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        self.stream.write("\r" + self.line(done, total) + "\033[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the bar's line (call before printing anything else)."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
