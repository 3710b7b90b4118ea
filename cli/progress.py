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


class JobProgress:
    """One bar for a whole job of many images (several workers): images done, images/s, time left.

    Args:
        stream: where to draw (stderr).
        total: images to do.
        enabled: draw at all (a terminal, not ``--quiet``).
        now: the clock (tests pass their own).
    """

    def __init__(self, stream: TextIO, total: int, enabled: bool, now=time.monotonic) -> None:
        self.stream, self.total, self.enabled, self.now = stream, total, enabled, now
        self.start, self.done, self.drawn = now(), 0, False

    def line(self) -> str:
        """``[#####-----] 30/100 images  30%  1.9 images/s  0:16, ETA 0:37``."""
        total = max(self.total, self.done, 1)
        elapsed = self.now() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = clock((total - self.done) / rate) if rate else "?"
        bar = "#" * (BAR_WIDTH * self.done // total) + "-" * (BAR_WIDTH - BAR_WIDTH * self.done // total)
        return (
            f"[{bar}] {self.done}/{total} images {100 * self.done // total:3d}%  {rate:.2f} images/s  "
            f"{clock(elapsed)}, ETA {eta}"
        )

    def advance(self) -> None:
        """One more image finished (written or failed): redraw."""
        self.done += 1
        if self.enabled:
            self.stream.write("\r" + self.line() + "\033[K")
            self.stream.flush()
            self.drawn = True

    def clear(self) -> None:
        """Erase the bar so that a message can be printed on its line (it is drawn again below)."""
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False

    def finish(self) -> None:
        """Leave the final bar on its own line."""
        if self.enabled:
            self.stream.write("\r" + self.line() + "\033[K\n")
            self.stream.flush()
            self.drawn = False
