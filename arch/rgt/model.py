"""The RGT network: shallow conv, residual groups of L-SA/RG-SA blocks, pixel-shuffle upsampling."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops.layers.torch import Rearrange
from torch import Tensor, nn

from ..common.cache import attach_geometry_cache, use_cache
from ..common.residual import residual_conv
from ..common.state import ignore_derived_buffers
from ..common.stream import norm_to, stream_dtype
from ..common.upsample import PixelShuffleUpsample
from ..errors import InputSizeError
from .blocks import ResidualGroup

# RG-SA pools the image twice by 4: smaller inputs leave it nothing to attend to.
MIN_INPUT_SIZE = 16
RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean the reference subtracts from RGB inputs


class RGT(nn.Module):
    """Recursive Generalization Transformer (Chen et al., ICLR 2024) for super-resolution.

    Keys and shapes match the official checkpoints; saved shift masks and position-index
    buffers are accepted and ignored, since everything size-dependent is rebuilt per input.

    Args:
        scale: upscaling factor (2^n or 3; 1 for no upsampling stage).
        in_chans: image channels (3 for RGB).
        embed_dim: token channels.
        depth: blocks per residual group.
        num_heads: attention heads per residual group.
        mlp_ratio: MLP hidden width over ``embed_dim``.
        qkv_bias: whether the attention projections have biases.
        split_size: ``(height, width)`` of the rectangle windows of the first L-SA branch
            (the second branch uses the transposed shape).
        c_ratio: RG-SA channel ratio of queries/keys.
        img_range: factor applied to the mean-subtracted input (and undone at the end).
        resi_connection: ``"1conv"`` or ``"3conv"``: the conv closing each group and the body.
        num_feat: channels of the reconstruction head.

    Attributes:
        fp32_stream: under bf16/fp16 weights, carry the residual stream (and the norms that read
            it) in float32, as autocast training does; attention, MLP and convs run in the
            weights' dtype. No effect in float32.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_chans: int = 3,
        embed_dim: int = 180,
        depth: Sequence[int] = (6,) * 8,
        num_heads: Sequence[int] = (6,) * 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        split_size: Sequence[int] = (8, 32),
        c_ratio: float = 0.5,
        img_range: float = 1.0,
        resi_connection: str = "1conv",
        num_feat: int = 64,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.img_range = img_range
        self.fp32_stream = True
        mean = torch.tensor(RGB_MEAN) if in_chans == 3 else torch.zeros(in_chans)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)

        # shallow features, then tokens (B, H, W, C)
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.before_RG = nn.Sequential(Rearrange("b c h w -> b h w c"), nn.LayerNorm(embed_dim))
        # deep features
        hidden = int(embed_dim * mlp_ratio)
        split = (int(split_size[0]), int(split_size[1]))
        self.layers = nn.ModuleList(
            ResidualGroup(i, embed_dim, d, heads, hidden, split, c_ratio, resi_connection, qkv_bias)
            for i, (d, heads) in enumerate(zip(depth, num_heads, strict=True))
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = residual_conv(embed_dim, resi_connection)
        # reconstruction (the reference's LeakyReLU keeps torch's default slope here)
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU())
        self.upsample = PixelShuffleUpsample(scale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)

        ignore_derived_buffers(self)
        # position biases: 2 branches x up to 4 window-piece shapes per L-SA block, for two (device, dtype)
        lsa_blocks = sum((d + 1) // 2 for d in depth)
        self.geometry = attach_geometry_cache(self, max_entries=2 * 2 * 4 * lsa_blocks + 8)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` image -> ``(B, C, scale*H, scale*W)``; any ``H, W >= 16``."""
        h, w = x.shape[-2:]
        if min(h, w) < MIN_INPUT_SIZE:
            raise InputSizeError(
                f"RGT input is {h}x{w}: both sides must be at least {MIN_INPUT_SIZE} px. "
                "Pad the image (spandrel's ImageModelDescriptor does this for you)."
            )
        cache = self.geometry if use_cache(self) else None
        mean = self.mean.to(x.dtype)
        # channels-last from the start: token views and convs then need no copies
        x = ((x - mean) * self.img_range).contiguous(memory_format=torch.channels_last)
        shallow = self.conv_first(x)
        # the residual stream runs in float32 under half-precision weights (common/stream.py)
        stream = stream_dtype(x.dtype, self.fp32_stream)
        to_tokens, norm = self.before_RG
        tokens = norm_to(norm, to_tokens(shallow).to(stream), stream)
        for layer in self.layers:
            tokens = layer(tokens, cache)
        deep = self.conv_after_body(norm_to(self.norm, tokens, x.dtype).permute(0, 3, 1, 2)) + shallow
        out = self.conv_last(self.upsample(self.conv_before_upsample(deep)))
        return (out / self.img_range + mean).contiguous()
