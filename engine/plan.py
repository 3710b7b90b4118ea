"""The one planning step of a run: dtype, tile, overlap, output size and memory to ask for.

The node calls :func:`plan` to show the user what will happen and to tell the host's memory
manager how much room to make; :func:`.runner.upscale` runs exactly that plan. With an automatic
tile the plan reserves room for a :data:`PLANNING_TILE` tile (or the whole frame when it is
smaller); once the weights are in place the run takes the largest tile the free memory allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .host import Settings
from .memory import model_bytes, tile_bytes
from .precision import NAMES, choose_precision
from .tiling import SizeRule, count_tiles, tile_shape

PLANNING_TILE = 512  # tile side the memory request is sized for when the tile is automatic


@dataclass(frozen=True)
class Plan:
    """What a run will do. Sizes in input pixels unless named otherwise.

    Attributes:
        dtype: compute dtype; ``note`` says why it differs from the request, if it does.
        nominal_tile: the tile side asked for, aligned to the model (automatic: the planning tile).
        tile: ``(height, width)`` of the tiles for this frame size (smaller axes are padded up).
        auto_tile: the tile is chosen from free memory once the weights are in place.
        overlap: overlap between neighbouring tiles.
        tiles_per_frame: tiles of one frame at ``tile``.
        frames: frames in the batch.
        output_size: ``(height, width)`` of the result.
        weights_bytes: the weights in ``dtype``.
        memory_required: device bytes for one tile's working set (weights excluded).
    """

    dtype: torch.dtype
    note: str
    nominal_tile: int
    tile: tuple[int, int]
    auto_tile: bool
    overlap: int
    tiles_per_frame: int
    frames: int
    output_size: tuple[int, int]
    weights_bytes: int
    memory_required: int

    @property
    def total_tiles(self) -> int:
        return self.tiles_per_frame * self.frames

    def describe(self) -> str:
        """One line for the log and the node: dtype, tiles, memory."""
        th, tw = self.tile
        tile = f"auto (planned {tw}x{th})" if self.auto_tile else f"{tw}x{th}"
        return (
            f"{NAMES[self.dtype]}, tile {tile}, overlap {self.overlap}, {self.total_tiles} tile(s), "
            f"output {self.output_size[1]}x{self.output_size[0]}, weights {self.weights_bytes / 2**20:.0f} MiB "
            f"+ {self.memory_required / 2**20:.0f} MiB per tile"
        )


def output_size(height: int, width: int, model_scale: int, output_scale: float) -> tuple[int, int]:
    """Final ``(H', W')``: the model's scale unless ``output_scale`` > 0 asks for another."""
    if output_scale <= 0 or output_scale == model_scale:
        return height * model_scale, width * model_scale
    return max(1, round(height * output_scale)), max(1, round(width * output_scale))


def plan(
    desc,
    image_shape: tuple[int, ...],
    settings: Settings,
    device: torch.device,
    bf16_ok: bool | None = None,
) -> Plan:
    """Plan upscaling a ``(B, H, W, C)`` batch with descriptor ``desc`` on ``device``.

    Args:
        desc: an ``ImageModelDescriptor`` (ours or spandrel's).
        image_shape: the IMAGE batch's shape.
        settings: tile (0 = auto), overlap, precision, output scale.
        device: where the model will run.
        bf16_ok: whether the device runs bf16 well (None = ask torch).
    """
    b, h, w = int(image_shape[0]), int(image_shape[1]), int(image_shape[2])
    choice = choose_precision(
        settings.precision, device, bool(desc.supports_half), bool(desc.supports_bfloat16), bf16_ok
    )
    rule = SizeRule.of(getattr(desc, "size_requirements", None))
    auto = settings.tile <= 0
    nominal = rule.align_down(max(PLANNING_TILE if auto else settings.tile, rule.align_up(1)))
    th, tw = tile_shape(h, w, nominal, rule)
    overlap = max(0, min(settings.overlap, nominal // 2))
    return Plan(
        dtype=choice.dtype,
        note=choice.note,
        nominal_tile=nominal,
        tile=(th, tw),
        auto_tile=auto,
        overlap=overlap,
        tiles_per_frame=count_tiles(max(h, th), max(w, tw), th, tw, overlap),
        frames=b,
        output_size=output_size(h, w, int(desc.scale), settings.output_scale),
        weights_bytes=model_bytes(desc.model, choice.dtype),
        memory_required=tile_bytes(desc, th, tw, choice.dtype),
    )
