"""``upscale --compile auto|on|off``: whether a job runs the engine's compiled path.

``on`` asks for ``torch.compile`` (the engine runs eagerly, with one warning, where it cannot
compile); ``off`` runs eagerly; ``auto`` compiles only where it pays. Compiling costs a fixed
time per tile shape in each process (each worker compiles its own), and saves a little on every
tile after it, so ``auto`` compiles when, on every device kind of the job, each worker's tiles of
one shape reach that device kind's break-even, ``compile seconds / saving per tile``
(:data:`PAYBACK`), and the compiler is there (a C++ compiler for inductor on the CPU, triton on
CUDA):

- CPU: never. Measured (``python -m benchmarks.bench_models --compile --threads 1``, fp32, 128
  px): inductor's graph is slower per tile than our eager path, whose fp32 linears are oneDNN's
  fused kernels (0.67-0.81x for SwinIR-S, DAT-light, RGT-S, HAT-S, DRCT), and compiles for 2.5-7
  minutes; ATD, the one family it speeds up (1.18x), takes 14 minutes to compile and loses the
  exact official output (its token categories flip: 6e-2 from eager). ``--compile on`` still
  compiles there.
- CUDA: from :data:`CUDA_MIN_TILES` tiles per tile shape and worker (a 3840x2160 frame is 40
  tiles of 512 px): inductor with CUDA graphs replays each tile in one launch. An estimate until
  a GPU measures it: about a minute of compiling against about 0.25 s saved per 512 px tile.

The job's tiles are counted from the images' headers with the tile the plan uses
(:func:`..engine.plan.plan`); images of one size share a tile shape, so they share a compile.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import torch
from PIL import Image

from ..engine.host import Settings
from ..engine.plan import plan
from .choices import COMPILE_CHOICES, CUDA_MIN_TILES, PAYBACK, Payback  # noqa: F401 (re-exported)
from .images import EXIF_ORIENTATION

_SIDEWAYS = (5, 6, 7, 8)  # EXIF orientations read with height and width swapped


def compiler_ready(kind: str) -> bool:
    """Whether inductor can compile on ``kind`` (``cpu``: a C++ compiler; ``cuda``: triton)."""
    try:
        if kind == "cuda":
            from torch.utils._triton import has_triton

            return bool(has_triton())
        from torch._inductor.cpp_builder import get_cpp_compiler

        return bool(get_cpp_compiler())
    except Exception:  # no compiler, or a torch without inductor: eager
        return False


def pays(kind: str, tiles_per_shape: float) -> bool:
    """Whether compiling pays on device ``kind`` for ``tiles_per_shape`` tiles of each shape per worker."""
    payback = PAYBACK.get(kind)
    return payback is not None and tiles_per_shape >= payback.min_tiles


def can_pay(kind: str) -> bool:
    """Whether compiling pays on device ``kind`` for some number of tiles."""
    return kind in PAYBACK and PAYBACK[kind].min_tiles < math.inf


def should_compile(policy: str, kinds: Iterable[str], tiles: int, shapes: int = 1, workers: int = 1) -> bool:
    """``--compile`` as a yes or no for one job.

    Args:
        policy: ``on``, ``off`` or ``auto``.
        kinds: the device kinds the job runs on (``cpu``, ``cuda``); one setting serves them all.
        tiles: the job's tiles (all images, all workers).
        shapes: distinct tile shapes among them (each compiles once per worker).
        workers: processes the tiles are spread over (each compiles its own graphs).
    """
    if policy != "auto":
        return policy == "on"
    kinds = set(kinds)
    per_shape = tiles / max(1, shapes) / max(1, workers)
    return bool(kinds) and all(pays(kind, per_shape) and compiler_ready(kind) for kind in kinds)


def image_size(path: str) -> tuple[int, int] | None:
    """``(height, width)`` of an image upright (EXIF orientation applied), from its header; None if
    it cannot be read (the run reports that image)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            sideways = im.getexif().get(EXIF_ORIENTATION, 1) in _SIDEWAYS
    except Exception:  # unreadable: its own error comes when it runs
        return None
    return (w, h) if sideways else (h, w)


def job_tiles(desc, sources: Iterable[str], settings: Settings) -> tuple[int, int]:
    """``(tiles, distinct tile shapes)`` the plan gives ``sources`` (on any device: the tiles the
    plan counts depend on the image, the model and the settings only)."""
    per_shape: Counter = Counter()
    for source in sources:
        size = image_size(source)
        if size is not None:
            run_plan = plan(desc, (1, *size, 3), settings, torch.device("cpu"))
            per_shape[run_plan.tile] += run_plan.total_tiles
    return sum(per_shape.values()), len(per_shape)


def decide(
    policy: str, desc, sources: list[str], settings: Settings, kinds: Iterable[str], workers: int
) -> bool:
    """``should_compile`` for a job, counting its tiles only when ``auto`` could compile at all."""
    kinds = set(kinds)
    if policy != "auto" or not kinds or not all(can_pay(kind) for kind in kinds):
        return should_compile(policy, kinds, 0)
    tiles, shapes = job_tiles(desc, sources, settings)
    return should_compile(policy, kinds, tiles, shapes, workers)
