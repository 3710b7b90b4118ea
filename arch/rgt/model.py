"""The RGT network: shallow conv, residual groups of L-SA/RG-SA blocks, pixel-shuffle upsampling."""

from __future__ import annotations

from torch import Tensor

from ..common.grouped import GroupedTokenSR
from ..common.model import SideRange, attention_elements, token_elements, upsampler_elements
from ..errors import InputSizeError
from .attention import recursion_steps
from .blocks import ResidualGroup
from .config import RGTConfig

# RG-SA pools the image twice by 4: smaller inputs leave it nothing to attend to.
MIN_INPUT_SIZE = 16


class RGT(GroupedTokenSR):
    """Recursive Generalization Transformer (Chen et al., ICLR 2024) for super-resolution.

    Keys and shapes match the official checkpoints; saved shift masks and position-index
    buffers are accepted and ignored, since everything size-dependent is rebuilt per input.

    Args:
        config: the hyperparameters (default: official RGT x4).
    """

    def __init__(self, config: RGTConfig | None = None) -> None:
        c = config or RGTConfig()
        super().__init__(c)
        self.build_trunk(c, ResidualGroup)

    def working_set_per_pixel(self, tile_h: int, tile_w: int) -> float:
        """Block activations, the rectangle windows' attention (or RG-SA's, whose key count grows
        with the tile, whichever is larger) and the upsampler."""
        c = self.config
        window = c.split_size[0] * c.split_size[1]
        steps = recursion_steps(tile_h, tile_w)
        summary = max(1, tile_h // 4**steps) * max(1, tile_w // 4**steps)
        return (
            token_elements(c.embed_dim, c.mlp_ratio, fp32_stream=True)
            + attention_elements(max(c.num_heads), max(window, summary))
            + upsampler_elements(c.scale)
        )

    def preferred_tile_multiple(self) -> int:
        """The long side of the rectangle windows (both orientations fit without padding)."""
        return max(self.config.split_size)

    def export_size_range(self, h: int, w: int) -> tuple[SideRange, SideRange]:
        """Sizes with as many RG-SA reductions as ``h x w`` (:func:`recursion_steps`; two below
        1024 px): a different count is a different graph."""
        (low, _), _ = super().export_size_range(h, w)
        m = self.preferred_tile_multiple()
        steps = recursion_steps(h, w)
        if steps > 2:  # the longer side sets the count: keep both sides in its band
            low = max(low, -(-16 * 4**steps // m) * m)
        high = (16 * 4 ** (steps + 1) - 1) // m * m
        return (max(low, MIN_INPUT_SIZE), high), (max(low, MIN_INPUT_SIZE), high)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` image -> ``(B, C, scale*H, scale*W)``; any ``H, W >= 16``."""
        h, w = x.shape[-2:]
        if min(h, w) < MIN_INPUT_SIZE:
            raise InputSizeError(
                f"RGT input is {h}x{w}: both sides must be at least {MIN_INPUT_SIZE} px. "
                "Pad the image (spandrel's ImageModelDescriptor does this for you)."
            )
        return super().forward(x)
