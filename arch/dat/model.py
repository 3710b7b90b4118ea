"""The DAT network: shallow conv, residual groups of spatial/channel attention blocks, upsampling."""

from __future__ import annotations

from ..common.grouped import GroupedTokenSR
from ..common.model import UPSAMPLE_FEATURES, attention_elements, token_elements, upsampler_elements
from .blocks import ResidualGroup
from .config import DATConfig


class DAT(GroupedTokenSR):
    """Dual Aggregation Transformer (Chen et al., ICCV 2023) for super-resolution.

    Keys and shapes match the official checkpoints; saved shift masks and window tables are
    accepted and ignored, since everything size-dependent is rebuilt per input. Any input size
    works (the spatial attention zero-pads its tokens to whole windows, as the official code does).

    Args:
        config: the hyperparameters (default: official DAT x4).
    """

    def __init__(self, config: DATConfig | None = None) -> None:
        c = config or DATConfig()
        super().__init__(c)
        self.build_trunk(c, ResidualGroup, c.upsampler)

    def working_set_per_pixel(self, tile_h: int, tile_w: int) -> float:
        """Block activations (plus the AIM's conv branch, gates and normalised q/k), the rectangle
        windows' attention and the upsampler."""
        c = self.config
        window = c.split_size[0] * c.split_size[1]
        features = UPSAMPLE_FEATURES if c.upsampler == "pixelshuffle" else c.in_chans
        return (
            token_elements(c.embed_dim, c.mlp_ratio, fp32_stream=True)
            + 4 * c.embed_dim
            + attention_elements(max(c.num_heads), window)
            + upsampler_elements(c.scale, features)
        )

    def preferred_tile_multiple(self) -> int:
        """The long side of the rectangle windows (both orientations fit without padding)."""
        return max(self.config.split_size)
