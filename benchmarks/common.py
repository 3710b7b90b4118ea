"""Shared benchmark helpers: the pack and the test helpers, timing (median of repeats), a printed
table + CSV.

Benchmarks use the tests' own helpers (``srt.tests.model_helpers``: the oracle, photo crops,
output differences, spandrel references), so a benchmark measures exactly what a test checks.
"""

from __future__ import annotations

import csv
import os
import statistics
import sys
import time
import types
from collections.abc import Callable

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_pack() -> types.ModuleType:
    """The checkout as package ``srt`` (the alias the tests use; ComfyUI imports it under its
    folder name), registered by ``cli.register_pack``."""
    if "srt" not in sys.modules:
        from cli import register_pack  # python -m benchmarks.<module>: the repository root is on sys.path

        register_pack()
    return sys.modules["srt"]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB, peak 1) of ``a`` against ``b`` taken as one image (the engine's
    :func:`~srt.engine.metrics.psnr`); inf when equal, nan when ``a`` is not finite."""
    from srt.engine.metrics import psnr as per_image

    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.isfinite(a).all():
        return float("nan")
    return float(per_image(a.flatten()[None], b.flatten()[None], peak=1.0)[0])


def time_call(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn()`` (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def print_table(rows: list[dict], csv_path: str | None = None) -> None:
    if not rows:
        return
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print(" | ".join(c.ljust(widths[c]) for c in cols))
    print("-|-".join("-" * widths[c] for c in cols))
    for r in rows:
        print(" | ".join(str(r[c]).ljust(widths[c]) for c in cols))
    if csv_path:
        os.makedirs(os.path.dirname(csv_path) or ".", exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        print(f"\nwrote {csv_path}")
