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

    Attributes:
        fp32_stream: under bf16/fp16 weights, carry the residual stream (and the norms that read
            it) in float32, as autocast training does; attention, FFN and convs run in the
            weights' dtype. No effect in float32.
    """

    def __init__(self, config: DATConfig | None = None) -> None:
        c = config or DATConfig()
        # position biases: 2 branches x up to 4 window-piece shapes per spatial block, for two (device, dtype)
        spatial_blocks = sum((d + 1) // 2 for d in c.depths)
        super().__init__(c, cache_entries=2 * 2 * 4 * spatial_blocks + 8)
        hidden = int(c.embed_dim * c.mlp_ratio)
        split = (int(c.split_size[0]), int(c.split_size[1]))
        self.build_trunk(
            c,
            (
                ResidualGroup(
                    i, c.embed_dim, d, heads, hidden, split, c.resi_connection, c.qkv_bias, c.qk_scale
                )
                for i, (d, heads) in enumerate(zip(c.depths, c.num_heads, strict=True))
            ),
            c.upsampler,
        )

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
