"""The command line's view of device memory (cli/device.py): the automatic tile counts PyTorch's
cached pool as free, so it does not shrink from one image to the next. CUDA's memory functions
are replaced by a simulated allocator (no GPU needed)."""

from __future__ import annotations

import torch
from engine_models import per_pixel

from srt.cli.device import free_memory
from srt.engine.memory import auto_tile_size
from srt.engine.tiling import SizeRule

MiB = 2**20
CUDA = torch.device("cuda")


class Allocator:
    """A GPU of ``total`` bytes: PyTorch's allocated and reserved bytes, the driver's free bytes."""

    def __init__(self, total: int, other: int = 0) -> None:
        self.total, self.other = total, other  # other: processes and contexts outside PyTorch
        self.allocated = self.reserved = 0

    def allocate(self, n: int) -> None:
        self.allocated += n
        self.reserved = max(self.reserved, self.allocated)

    def free(self, n: int) -> None:  # back to PyTorch's pool, not to the driver
        self.allocated -= n

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(
            torch.cuda,
            "mem_get_info",
            lambda device=None: (self.total - self.other - self.reserved, self.total),
        )
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: self.reserved)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: self.allocated)


def test_free_memory_counts_pytorchs_cached_pool(monkeypatch):
    gpu = Allocator(8192 * MiB, other=500 * MiB)
    gpu.install(monkeypatch)
    gpu.allocate(300 * MiB)  # the model's weights
    assert free_memory(CUDA) == (8192 - 500 - 300) * MiB
    gpu.allocate(2000 * MiB)  # tiles of an image ...
    gpu.free(2000 * MiB)  # ... released into the pool when it is done
    assert free_memory(CUDA) == (8192 - 500 - 300) * MiB


def test_the_automatic_tile_does_not_shrink_from_image_to_image(monkeypatch):
    desc = per_pixel(4)
    gpu = Allocator(4096 * MiB)
    gpu.install(monkeypatch)
    gpu.allocate(200 * MiB)  # weights, kept on the GPU between images (cli/device.py make_host)
    tiles = []
    for _ in range(3):  # three images, each planned from the free memory when it starts
        tile = auto_tile_size(desc, free_memory(CUDA), torch.float32, SizeRule(multiple_of=8), (4000, 4000))
        tiles.append(tile)
        working_set = 3000 * MiB  # what the image's tiles used at their peak
        gpu.allocate(working_set)
        gpu.free(working_set)
    assert tiles[0] < 1024, "the simulated GPU limits the tile"
    assert tiles == [tiles[0]] * 3
