"""The engine's host outside ComfyUI: the device, its free memory, and where messages go."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from ..engine.host import Host
from .choices import DEVICES  # noqa: F401 (re-exported)
from .errors import CliError


def choose_device(name: str) -> torch.device:
    """``auto``: the first CUDA device if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CliError(
            "CUDA is not available",
            "--device cuda",
            "use --device cpu, or install a CUDA build of torch for this GPU",
        )
    return torch.device(name)


def available_ram() -> int | None:
    """Bytes of RAM the system can still give (Linux ``MemAvailable``, else free pages); None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # not Linux: ask sysconf below
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows) or no such name (macOS)
        return None


def free_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` for the automatic tile size.

    On CUDA: what the driver reports free plus PyTorch's cached pool (reserved but unused memory),
    as ComfyUI counts it. The model stays on the GPU between images and its cache is not emptied,
    so from the second image on the previous tiles' memory sits in that pool: counted as used, it
    would give every later image a smaller tile.
    """
    if device.type == "cuda":
        pool = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0]) + max(0, int(pool))
    return available_ram()


def make_host(
    device: torch.device,
    progress: Callable[[int, int], None],
    warn: Callable[[str], None],
    compile_backend: object = "inductor",
) -> Host:
    """A :class:`Host` that keeps the model on ``device`` between images and returns images on the CPU
    (``compile_backend``: ``torch.compile``'s backend when the settings ask to compile)."""
    cuda = device.type == "cuda"
    return Host(
        device=device,
        offload_device=device,  # one model for many images: leave it where it runs
        output_device=torch.device("cpu"),
        free_memory=free_memory,
        empty_cache=torch.cuda.empty_cache if cuda else (lambda: None),
        progress=progress,
        warn=warn,
        compile_backend=compile_backend,
    )
