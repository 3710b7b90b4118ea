"""HAT: Hybrid Attention Transformer for image super-resolution (Chen et al., CVPR 2023).

Shallow conv -> residual hybrid attention groups -> conv -> pixel-shuffle upsampling, with the
state-dict layout of the official code (``XPixelGroup/HAT``). Inputs of any size: sides are
reflect-padded at the bottom/right to a multiple of the window, as the official test pipeline does,
and the output is cropped. Where a side is too short to reflect that far (the official code fails
there: "padding size should be less than the corresponding input dimension"), the reflection is
completed by repeating the edge, the rule spandrel's call API pads small inputs with.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..common.embed import PatchEmbed
from ..common.image import image_mean, pad_bottom_right, pad_to_multiple
from ..common.model import SRModel, attention_elements, token_elements, upsampler_elements
from ..common.position import relative_position_index
from ..common.state import ignore_derived_buffers
from ..common.stream import norm_to, stream_dtype
from ..common.swin import ShiftedWindows, swin_geometry
from ..common.upsample import PixelShuffleUpsample
from ..errors import InputSizeError
from .blocks import HAB, RHAG
from .config import HATConfig
from .ocab import OCAB, overlap_position_index


class HAT(SRModel):
    """The HAT network (pixel-shuffle upsampler).

    Args:
        config: the hyperparameters (default: official HAT x4).

    Attributes:
        fp32_stream: carry the residual stream in float32 under half-precision weights.
    """

    def __init__(self, config: HATConfig | None = None) -> None:
        super().__init__(config or HATConfig())
        c = self.config
        self.window_size = c.window_size
        self.img_range = c.img_range
        self.fp32_stream = True
        self.register_buffer("mean", image_mean(c.in_chans), persistent=False)

        self.conv_first = nn.Conv2d(c.in_chans, c.embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(c.embed_dim, c.patch_norm)
        if c.ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, c.img_size**2, c.embed_dim))
        self.layers = nn.ModuleList(
            self._group(heads, depth) for heads, depth in zip(c.num_heads, c.depths, strict=True)
        )
        self.norm = nn.LayerNorm(c.embed_dim)
        one_conv = c.resi_connection == "1conv"
        self.conv_after_body = nn.Conv2d(c.embed_dim, c.embed_dim, 3, 1, 1) if one_conv else nn.Identity()

        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(c.embed_dim, c.num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
        )
        self.upsample = PixelShuffleUpsample(c.scale, c.num_feat)
        self.conv_last = nn.Conv2d(c.num_feat, c.in_chans, 3, 1, 1)
        ignore_derived_buffers(self)

    def _group(self, heads: int, depth: int) -> RHAG:
        c = self.config
        hidden = int(c.embed_dim * c.mlp_ratio)
        blocks = [
            HAB(
                c.embed_dim, heads, c.window_size, c.shift and i % 2 == 1, hidden,
                c.conv_channels, c.squeeze_channels, c.conv_scale, c.qkv_bias, c.qk_scale,
            )
            for i in range(depth)
        ]  # fmt: skip
        ocab = OCAB(c.embed_dim, heads, c.window_size, c.overlap_window, hidden, c.qkv_bias, c.qk_scale)
        conv = nn.Conv2d(c.embed_dim, c.embed_dim, 3, 1, 1) if c.resi_connection == "1conv" else None
        return RHAG(blocks, ocab, conv)

    # ---- what the engine asks -------------------------------------------------------------------

    def working_set_per_pixel(self, tile_h: int, tile_w: int) -> float:
        """Block activations, window and overlapping attention, the conv branch and the upsampler."""
        c = self.config
        widen = (c.overlap_window / c.window_size) ** 2  # keys/values copied into widened windows
        return (
            token_elements(c.embed_dim, c.mlp_ratio, fp32_stream=True)
            + attention_elements(max(c.num_heads), c.overlap_window**2)
            + 2 * c.embed_dim * widen
            + 2 * (c.conv_channels + c.embed_dim)
            + upsampler_elements(c.scale, c.num_feat)
        )

    def preferred_tile_multiple(self) -> int:
        return self.config.img_size if self.config.ape else self.window_size

    # ---- geometry: built once per (device, dtype), shared by all blocks and tiles ----------------

    def window_geometry(
        self, x: Tensor
    ) -> tuple[list[tuple[list[Tensor], Tensor]], Tensor, ShiftedWindows]:
        """Per group: each HAB's ``(heads, N, N)`` bias and the OCAB's ``(heads, N, M)`` bias; the
        ``(4, 1, N, N)`` shift masks; the shifted windows of ``x``'s grid
        (:func:`~..common.swin.swin_geometry`). Biases and masks do not depend on the input size:
        one entry per device and dtype; the shifted windows one per size.
        """
        ws, ow = self.window_size, self.config.overlap_window

        def biases() -> list[tuple[list[Tensor], Tensor]]:
            window_index = relative_position_index(ws, ws, x.device)
            overlap_index = overlap_position_index(ws, ow, x.device)
            return [
                (
                    [
                        b.attn.position_bias(window_index).to(x.dtype).contiguous()
                        for b in g.residual_group.blocks
                    ],
                    g.residual_group.overlap_attn.position_bias(overlap_index).to(x.dtype).contiguous(),
                )
                for g in self.layers
            ]

        return swin_geometry(self, x, ws, biases)

    # ---- forward ---------------------------------------------------------------------------------

    def forward_features(self, x: Tensor) -> Tensor:
        """Deep features of ``(B, embed_dim, H, W)`` (sides multiples of the window)."""
        groups, shift_masks, order = self.window_geometry(x)
        stream = stream_dtype(x.dtype, self.fp32_stream)
        tokens = self.patch_embed(x, stream)
        if self.config.ape:
            tokens = tokens + self.absolute_pos_embed.to(stream).view(1, *tokens.shape[1:])
        for rhag, (hab_biases, ocab_bias) in zip(self.layers, groups, strict=True):
            tokens = rhag(tokens, hab_biases, ocab_bias, shift_masks, order)
        return rearrange(norm_to(self.norm, tokens, x.dtype), "b h w c -> b c h w")

    def _pad(self, x: Tensor) -> Tensor:
        """Reflect-pad the bottom/right to whole windows (to the embedding's size with ``ape``)."""
        if not self.config.ape:
            return pad_to_multiple(x, self.window_size, "reflect", repeat=False)
        size = self.config.img_size
        h, w = x.shape[-2:]
        if h > size or w > size:
            raise InputSizeError(
                f"this HAT model has an absolute position embedding trained for {size}x{size} inputs "
                f"and cannot run on {h}x{w}: upscale in {size}x{size} tiles (tile_size={size})."
            )
        return pad_bottom_right(x, size - h, size - w, "reflect", repeat=False)

    def forward(self, x: Tensor) -> Tensor:
        """Upscale ``(B, in_chans, H, W)`` (any H, W) to ``(B, in_chans, H * scale, W * scale)``."""
        h, w = x.shape[-2:]
        x = self._pad(x)
        mean = self.mean.to(x.dtype)
        # channels-last images: the body's token layout is then a free view
        x = ((x - mean) * self.img_range).contiguous(memory_format=torch.channels_last)
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        out = out / self.img_range + mean
        return out[..., : h * self.scale, : w * self.scale].contiguous()
