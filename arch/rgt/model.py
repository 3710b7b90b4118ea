"""The RGT network: shallow conv, residual groups of L-SA/RG-SA blocks, pixel-shuffle upsampling."""

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
from ..common.upsample import PixelShuffleUpsample
from ..errors import InputSizeError
from .attention import recursion_steps
from .blocks import ResidualGroup
from .config import RGTConfig

# RG-SA pools the image twice by 4: smaller inputs leave it nothing to attend to.
MIN_INPUT_SIZE = 16


class RGT(SRModel):
    """Recursive Generalization Transformer (Chen et al., ICLR 2024) for super-resolution.

    Keys and shapes match the official checkpoints; saved shift masks and position-index
    buffers are accepted and ignored, since everything size-dependent is rebuilt per input.

    Args:
        config: the hyperparameters (default: official RGT x4).

    Attributes:
        fp32_stream: under bf16/fp16 weights, carry the residual stream (and the norms that read
            it) in float32, as autocast training does; attention, MLP and convs run in the
            weights' dtype. No effect in float32.
    """

    def __init__(self, config: RGTConfig | None = None) -> None:
        c = config or RGTConfig()
        # position biases: 2 branches x up to 4 window-piece shapes per L-SA block, for two (device, dtype)
        lsa_blocks = sum((d + 1) // 2 for d in c.depths)
        super().__init__(c, cache_entries=2 * 2 * 4 * lsa_blocks + 8)
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
            ResidualGroup(i, c.embed_dim, d, heads, hidden, split, c.c_ratio, c.resi_connection, c.qkv_bias)
            for i, (d, heads) in enumerate(zip(c.depths, c.num_heads, strict=True))
        )
        self.norm = nn.LayerNorm(c.embed_dim)
        self.conv_after_body = residual_conv(c.embed_dim, c.resi_connection)
        # reconstruction (the reference's LeakyReLU keeps torch's default slope here)
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(c.embed_dim, UPSAMPLE_FEATURES, 3, 1, 1), nn.LeakyReLU()
        )
        self.upsample = PixelShuffleUpsample(c.scale, UPSAMPLE_FEATURES)
        self.conv_last = nn.Conv2d(UPSAMPLE_FEATURES, c.in_chans, 3, 1, 1)
        ignore_derived_buffers(self)

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

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` image -> ``(B, C, scale*H, scale*W)``; any ``H, W >= 16``."""
        h, w = x.shape[-2:]
        if min(h, w) < MIN_INPUT_SIZE:
            raise InputSizeError(
                f"RGT input is {h}x{w}: both sides must be at least {MIN_INPUT_SIZE} px. "
                "Pad the image (spandrel's ImageModelDescriptor does this for you)."
            )
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
        out = self.conv_last(self.upsample(self.conv_before_upsample(deep)))
        return (out / self.img_range + mean).contiguous()
