"""DRCT: Dense-Residual-Connected Transformer for image super-resolution (Hsu et al., CVPRW 2024).

Shallow conv -> residual dense groups of Swin layers -> conv -> pixel-shuffle upsampling, with the
state-dict layout of the official code (``ming053l/DRCT``). Inputs of any size: sides are
reflect-padded at the bottom/right to a multiple of the window and the output is cropped, as the
official test pipeline does.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..common.embed import PatchEmbed
from ..common.image import image_mean, pad_to_multiple
from ..common.model import (
    UPSAMPLE_FEATURES,
    SRModel,
    attention_elements,
    token_elements,
    upsampler_elements,
)
from ..common.position import relative_position_index
from ..common.state import ignore_derived_buffers
from ..common.stream import norm_to, stream_dtype
from ..common.swin import ShiftedWindows, swin_geometry
from ..common.upsample import PixelShuffleUpsample
from .blocks import RDG, SWINS_PER_RDG
from .config import DRCTConfig


class DRCT(SRModel):
    """The DRCT network (pixel-shuffle upsampler).

    Args:
        config: the hyperparameters (default: official DRCT x4).

    Attributes:
        fp32_stream: carry the residual stream in float32 under half-precision weights (see
            blocks.py); only switched off to demonstrate the fp16 overflow it prevents.
    """

    def __init__(self, config: DRCTConfig | None = None) -> None:
        super().__init__(config or DRCTConfig())
        c = self.config
        self.window_size = c.window_size
        self.img_range = c.img_range
        self.fp32_stream = True
        self.register_buffer("mean", image_mean(c.in_chans), persistent=False)

        self.conv_first = nn.Conv2d(c.in_chans, c.embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(c.embed_dim, c.patch_norm)
        self.layers = nn.ModuleList(
            RDG(c.embed_dim, heads, c.window_size, c.mlp_ratio, c.gc, c.shift, c.qkv_bias)
            for heads in c.num_heads
        )
        self.norm = nn.LayerNorm(c.embed_dim)
        if c.resi_connection == "1conv":
            self.conv_after_body = nn.Conv2d(c.embed_dim, c.embed_dim, 3, 1, 1)
        elif c.resi_connection == "identity":
            self.conv_after_body = nn.Identity()
        else:
            raise ValueError(f"resi_connection must be '1conv' or 'identity', not {c.resi_connection!r}")

        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(c.embed_dim, UPSAMPLE_FEATURES, 3, 1, 1), nn.LeakyReLU(inplace=True)
        )
        self.upsample = PixelShuffleUpsample(c.scale, UPSAMPLE_FEATURES)
        self.conv_last = nn.Conv2d(UPSAMPLE_FEATURES, c.in_chans, 3, 1, 1)
        ignore_derived_buffers(self)

    # ---- what the engine asks -------------------------------------------------------------------

    def working_set_per_pixel(self, tile_h: int, tile_w: int) -> float:
        """Block activations, window attention, the dense growth features and the upsampler."""
        c = self.config
        return (
            token_elements(c.embed_dim, c.mlp_ratio, fp32_stream=True)
            + attention_elements(max(c.num_heads), c.window_size**2)
            + SWINS_PER_RDG * c.gc
            + upsampler_elements(c.scale)
        )

    def preferred_tile_multiple(self) -> int:
        return self.window_size

    # ---- geometry: built once per (device, dtype), shared by all layers and tiles ----------------

    def window_geometry(self, x: Tensor) -> tuple[list[list[Tensor]], Tensor, ShiftedWindows]:
        """Per-layer position biases ``(heads, N, N)``, the ``(4, 1, N, N)`` shift masks and the
        shifted windows for features ``x`` (:func:`~..common.swin.swin_geometry`).

        Biases and masks do not depend on the input size (a shifted window is one of four kinds,
        whatever the image size), so one entry per device and dtype serves every tile.
        """
        ws = self.window_size

        def biases() -> list[list[Tensor]]:
            index = relative_position_index(ws, ws, x.device)
            return [
                [s.attn.position_bias(index).to(x.dtype).contiguous() for s in rdg.swins]
                for rdg in self.layers
            ]

        return swin_geometry(self, x, ws, biases)

    # ---- forward ---------------------------------------------------------------------------------

    def forward_features(self, x: Tensor) -> Tensor:
        """Deep features of ``(B, embed_dim, H, W)`` (sides multiples of the window)."""
        pos_biases, shift_masks, order = self.window_geometry(x)
        # the residual stream runs in float32; the result comes back in the input's dtype
        stream = stream_dtype(x.dtype, self.fp32_stream)
        tokens = self.patch_embed(x, stream)
        for rdg, biases in zip(self.layers, pos_biases, strict=True):
            tokens = rdg(tokens, biases, shift_masks, order)
        return rearrange(norm_to(self.norm, tokens, x.dtype), "b h w c -> b c h w")

    def forward(self, x: Tensor) -> Tensor:
        """Upscale ``(B, in_chans, H, W)`` (any H, W) to ``(B, in_chans, H * scale, W * scale)``."""
        h, w = x.shape[-2:]
        # pad to whole windows the way the official test pipeline does
        x = pad_to_multiple(x, self.window_size, "reflect", repeat=False)
        mean = self.mean.to(x.dtype)
        # channels-last images: the body's token layout is then a free view, and CPU convs
        # (fp16 above all) take much faster kernels
        x = ((x - mean) * self.img_range).contiguous(memory_format=torch.channels_last)
        # shallow features, deep features with a long skip, then upsampling
        feat = self.conv_first(x)
        feat = self.conv_after_body(self.forward_features(feat)) + feat
        out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        out = out / self.img_range + mean
        return out[..., : h * self.scale, : w * self.scale].contiguous()
