"""What the engine needs from its host, what the user asked for, and what it reports back.

The host (ComfyUI, a test, a script) supplies devices, free memory, cache emptying, progress,
interrupt and out-of-memory exception types, so the engine never imports ComfyUI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .compiled import CompileStats
from .placement import Placement

log = logging.getLogger(__name__)


@dataclass
class Host:
    """What the engine needs from its host.

    Args:
        device: compute device.
        offload_device: where the model goes back to afterwards.
        output_device: where the output IMAGE/MASK live (ComfyUI's intermediate device).
        free_memory: bytes available on a device (for the auto tile size); None = no limit known.
        empty_cache: release cached device memory (after an out-of-memory error and after the run).
        progress: called after every tile with ``(done, total)``.
        check_interrupt: called before every tile; raises the host's interrupt exception.
        oom_exceptions: the host's out-of-memory exception types.
        warn: where warnings go (once per run each).
        bf16_ok: whether the device runs bf16 well (None = ask torch).
        output_dtype: dtype of the output IMAGE (ComfyUI's intermediate dtype); tiles are blended
            in float32 and each frame is converted once.
        compile_backend: ``torch.compile`` backend for ``Settings.compile`` (tests use "eager").
        placement: ``(descriptor, memory_required) -> Placement`` that puts the weights on the
            device (ComfyUI's model management); None = convert and move the module locally and
            put it back afterwards (:class:`.placement.LocalPlacement`).
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    offload_device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    output_device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    free_memory: Callable[[torch.device], int] | None = None
    empty_cache: Callable[[], None] = lambda: None
    progress: Callable[[int, int], None] | None = None
    check_interrupt: Callable[[], None] | None = None
    oom_exceptions: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError,)
    warn: Callable[[str], None] = log.warning
    bf16_ok: bool | None = None
    output_dtype: torch.dtype = torch.float32
    placement: Callable[..., Placement] | None = None
    compile_backend: object = "inductor"  # a backend name or a callable


@dataclass
class Settings:
    """User settings. ``tile=0``: automatic; ``output_scale=0``: the model's own scale.

    ``compile``: run the model through ``torch.compile`` (opt-in; all tiles of a run have one
    shape, so it compiles once per model class, tile shape and dtype, and later runs reuse it; on
    CUDA with inductor the tiles replay a CUDA graph).
    """

    tile: int = 0
    overlap: int = 32
    precision: str = "auto"
    output_scale: float = 0.0
    compile: bool = False


@dataclass
class Report:
    """What happened, for the node's log line and for tests."""

    dtype: torch.dtype = torch.float32
    tile: tuple[int, int] = (0, 0)
    overlap: int = 0
    tiles_run: int = 0
    oom_backoffs: int = 0
    blend_device: torch.device | None = None  # where the frames' tiles were blended
    nonfinite_tiles: int = 0
    fp32_from_tile: int = 0  # when a half run switched to fp32 for good: the first tile in fp32 (1-based)
    # torch.compile's cost in this run: per tile shape and dtype, the first compiled tile's time minus a
    # steady compiled tile's (0 when an earlier run compiled it; see engine/compiled.py)
    compile_seconds: float = 0.0
    compile: CompileStats = field(default_factory=CompileStats)  # graphs, breaks, recompiles, CUDA graphs
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    image: Tensor  # (B, H', W', C) in [0, 1], host.output_dtype, on the output device
    mask: Tensor | None  # (B, H', W') when a mask or alpha came in
    report: Report
