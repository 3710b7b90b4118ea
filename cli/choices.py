"""What the command line's arguments accept, importable without torch.

The parser is built from these alone, so ``python -m cli`` answers ``--help``, a wrong choice or a
missing input file at once, before the seconds ``import torch`` takes. Values the engine also
defines (precisions, comparison modes, channels, the default overlap) are repeated here;
``tests/test_cli.py`` checks that both agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # engine.precision.PRECISIONS
MODES = ("side_by_side", "split", "difference")  # engine.comparison.MODES
CHANNELS = ("y", "rgb")  # engine.metrics.CHANNELS
DEFAULT_OVERLAP = 32  # engine.host.Settings().overlap

DEVICES = ("auto", "cpu", "cuda")
EXPORT_PRECISIONS = ("fp32", "fp16", "bf16")  # arch.export.PRECISIONS
EXPORT_TILE = 512  # arch.export.DEFAULT_TILE
BACKENDS = ("torch", "onnxruntime", "openvino")  # cli.backends.BACKENDS
COMPILE_CHOICES = ("auto", "on", "off")

DEFAULT_PATTERN = "SRT_*_x{scale}.safetensors"
DEFAULT_SCALES = (2, 4)
DEFAULT_SCALE = 4

NAMING_RULE = (
    "each image is written as <name>.png in the -o folder; inputs that share a name but not the "
    "extension (ignoring case: a.jpg and a.png) keep it instead: a.jpg.png, a.png.png; one file "
    "name in several folders: x.png, x_2.png, ... in input order"
)


@dataclass(frozen=True)
class Payback:
    """What compiling costs and saves on one kind of device (:mod:`.compile_policy`).

    Attributes:
        compile_seconds: one compile of one tile shape (the first compiled tile's extra time).
        tile_saving: seconds a compiled tile saves over an eager one (0: compiled is not faster).
    """

    compile_seconds: float
    tile_saving: float

    @property
    def min_tiles(self) -> float:
        """Tiles of one shape from which compiling pays for itself (inf: never)."""
        if self.tile_saving <= 0:
            return math.inf
        return math.ceil(self.compile_seconds / self.tile_saving)


PAYBACK = {
    # bench_models --compile --threads 1, CPU fp32 at 128 px: compiled 0.67-0.81x of eager (ATD 1.18x,
    # but not exact), 2.5-14 minutes compiling on 2 cores
    "cpu": Payback(compile_seconds=300.0, tile_saving=0.0),
    "cuda": Payback(compile_seconds=60.0, tile_saving=0.25),  # estimate; 512 px tiles
}
CUDA_MIN_TILES = int(PAYBACK["cuda"].min_tiles)
