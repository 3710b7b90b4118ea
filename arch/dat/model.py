"""The DAT network: shallow conv, residual groups of spatial/channel attention blocks, upsampling."""

from __future__ import annotations

import torch
from einops.layers.torch import Rearrange
from torch import Tensor, nn

from ..common.image import image_mean
from ..common.model import (
    UPSAMPLE_FEATURES,
    SRModel,
    attention_elements,
    token_elements,
    upsampler_elements,
)
from ..common.residual import residual_conv
from ..common.state import ignore_derived_buffers
from ..common.stream import norm_to, stream_dtype
from ..common.upsample import PixelShuffleDirect, PixelShuffleUpsample
from .blocks import ResidualGroup
from .config import DATConfig


class DAT(SRModel):
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
        self.img_range = c.img_range
        self.fp32_stream = True
        self.register_buffer("mean", image_mean(c.in_chans), persistent=False)

        # shallow features, then tokens (B, H, W, C)
        self.conv_first = nn.Conv2d(c.in_chans, c.embed_dim, 3, 1, 1)
        self.before_RG = nn.Sequential(Rearrange("b c h w -> b h w c"), nn.LayerNorm(c.embed_dim))
        # deep features
        hidden = int(c.embed_dim * c.mlp_ratio)
        split = (int(c.split_size[0]), int(c.split_size[1]))
        self.layers = nn.ModuleList(
            ResidualGroup(i, c.embed_dim, d, heads, hidden, split, c.resi_connection, c.qkv_bias, c.qk_scale)
            for i, (d, heads) in enumerate(zip(c.depths, c.num_heads, strict=True))
        )
        self.norm = nn.LayerNorm(c.embed_dim)
        self.conv_after_body = residual_conv(c.embed_dim, c.resi_connection)
        # reconstruction (the reference's LeakyReLU keeps torch's default slope here)
        if c.upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(c.embed_dim, UPSAMPLE_FEATURES, 3, 1, 1), nn.LeakyReLU()
            )
            self.upsample: nn.Module = PixelShuffleUpsample(c.scale, UPSAMPLE_FEATURES)
            self.conv_last = nn.Conv2d(UPSAMPLE_FEATURES, c.in_chans, 3, 1, 1)
        else:
            self.upsample = PixelShuffleDirect(c.scale, c.embed_dim, c.in_chans)
        ignore_derived_buffers(self)

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

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` image -> ``(B, C, scale*H, scale*W)``; any size."""
        mean = self.mean.to(x.dtype)
        # channels-last from the start: token views and convs then need no copies
        x = ((x - mean) * self.img_range).contiguous(memory_format=torch.channels_last)
        shallow = self.conv_first(x)
        # the residual stream runs in float32 under half-precision weights (common/stream.py)
        stream = stream_dtype(x.dtype, self.fp32_stream)
        to_tokens, norm = self.before_RG
        tokens = norm_to(norm, to_tokens(shallow).to(stream), stream)
        for layer in self.layers:
            tokens = layer(tokens, self.cached_geometry)
        deep = self.conv_after_body(norm_to(self.norm, tokens, x.dtype).permute(0, 3, 1, 2)) + shallow
        if self.config.upsampler == "pixelshuffle":
            out = self.conv_last(self.upsample(self.conv_before_upsample(deep)))
        else:
            out = self.upsample(deep)
        return (out / self.img_range + mean).contiguous()
