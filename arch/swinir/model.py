"""SwinIR: image restoration with Swin transformers (Liang et al., ICCVW 2021).

Shallow conv -> residual Swin transformer blocks -> conv, with a long skip -> one of four
reconstructions: pixel-shuffle (classical SR), one-step pixel-shuffle (lightweight SR), nearest
upsampling + convs (real-world SR), or none (denoising and JPEG artifact removal: the output is
the input plus a predicted residual). The state-dict layout is the official code's
(``JingyunLiang/SwinIR``); DiffBIR's variant, which pixel-unshuffles the input first, loads too.
Inputs of any size: sides are reflect-padded at the bottom/right to whole windows and the output
is cropped, as the official test pipeline does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch.nn.functional as F
from torch import Tensor, nn

from ..common.model import attention_elements, token_elements, upsampler_elements
from ..common.residual import residual_conv
from ..common.state import ignore_derived_buffers
from ..common.swin import SwinLayer
from ..common.swin_model import SwinSR
from ..common.upsample import PixelShuffleDirect, PixelShuffleUpsample
from .blocks import RSTB
from .config import SwinIRConfig

# LeakyReLU slope between the nearest-upsampling convs (the pixel-shuffle path keeps torch's 0.01).
NEAREST_SLOPE = 0.2


class SwinIR(SwinSR):
    """The SwinIR network, every task's reconstruction.

    Args:
        config: the hyperparameters (default: classical SwinIR-M x4).
    """

    def __init__(self, config: SwinIRConfig | None = None) -> None:
        super().__init__(config or SwinIRConfig())
        c = self.config
        self.upsampler = c.upsampler
        conv_first = nn.Conv2d(c.in_chans * c.unshuffle**2, c.embed_dim, 3, 1, 1)
        if c.unshuffle_in_conv_first:
            conv_first = nn.Sequential(nn.PixelUnshuffle(c.unshuffle), conv_first)
        self.build_stem(c, conv_first)
        layer_args = dict(window=c.window_size, qkv_bias=c.qkv_bias, shift=c.shift)
        self.layers = nn.ModuleList(
            RSTB(
                depth,
                c.embed_dim,
                c.resi_connection,
                heads=heads,
                mlp_hidden=c.mlp_hidden,
                **layer_args,
            )
            for depth, heads in zip(c.depths, c.num_heads, strict=True)
        )
        self.norm = nn.LayerNorm(c.embed_dim)
        self.conv_after_body = residual_conv(c.embed_dim, c.resi_connection)
        self._build_reconstruction(c)
        ignore_derived_buffers(self)

    def _build_reconstruction(self, c: SwinIRConfig) -> None:
        if c.upsampler in ("pixelshuffle", "nearest+conv"):
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(c.embed_dim, c.num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
        if c.upsampler == "pixelshuffle":
            self.upsample = PixelShuffleUpsample(c.upscale, c.num_feat)
        elif c.upsampler == "pixelshuffledirect":
            self.upsample = PixelShuffleDirect(c.upscale, c.embed_dim, c.in_chans)
        elif c.upsampler == "nearest+conv":
            steps = int(math.log2(c.upscale))
            if 2**steps != c.upscale or not 1 <= steps <= 3:
                raise ValueError(f"nearest+conv upsampling is x2, x4 or x8, not x{c.upscale}")
            self.up_convs = []
            for i in range(1, steps + 1):
                self.add_module(f"conv_up{i}", nn.Conv2d(c.num_feat, c.num_feat, 3, 1, 1))
                self.up_convs.append(getattr(self, f"conv_up{i}"))
            self.conv_hr = nn.Conv2d(c.num_feat, c.num_feat, 3, 1, 1)
        if c.upsampler != "pixelshuffledirect":
            self.conv_last = nn.Conv2d(c.num_feat if c.upsampler else c.embed_dim, c.in_chans, 3, 1, 1)

    # ---- what the engine asks -------------------------------------------------------------------

    def working_set_per_pixel(self, tile_h: int, tile_w: int) -> float:
        """Block activations and window attention (per token: the input is unshuffled into
        ``unshuffle^2`` times fewer), and the reconstruction at the output resolution."""
        c = self.config
        body = token_elements(c.embed_dim, c.mlp_ratio, fp32_stream=True)
        body += attention_elements(max(c.num_heads), c.window_size**2)
        if c.upsampler == "pixelshuffledirect":
            tail = 2 * (c.embed_dim + c.in_chans * c.upscale**2)
        elif c.upsampler == "nearest+conv":
            tail = 3 * c.num_feat * c.upscale**2  # upsampled features, conv output, LeakyReLU copy
        elif c.upsampler == "pixelshuffle":
            tail = upsampler_elements(c.upscale, c.num_feat)
        else:
            tail = 2 * c.embed_dim
        return (body + tail) / c.unshuffle**2

    def preferred_tile_multiple(self) -> int:
        return self.window_size * self.config.unshuffle

    # ---- what differs from the shared skeleton (common/swin_model.py) ---------------------------

    def swin_layers(self, group: nn.Module) -> Iterable[SwinLayer]:
        return group.residual_group.blocks

    def shallow_input(self, image: Tensor) -> Tensor:
        """The normalised image, pixel-unshuffled where ``conv_first`` does not do it itself."""
        c = self.config
        if c.unshuffle > 1 and not c.unshuffle_in_conv_first:
            return F.pixel_unshuffle(image, c.unshuffle)
        return image

    def reconstruct(self, deep: Tensor, image: Tensor) -> Tensor:
        """Deep features (plus the shallow skip) -> the normalised output image."""
        if self.upsampler == "pixelshuffledirect":
            return self.upsample(deep)
        if self.upsampler == "":
            return image + self.conv_last(deep)  # restoration predicts a residual of the input
        x = self.conv_before_upsample(deep)
        if self.upsampler == "pixelshuffle":
            return self.conv_last(self.upsample(x))
        for conv in self.up_convs:
            x = F.leaky_relu(conv(F.interpolate(x, scale_factor=2, mode="nearest")), NEAREST_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(x), NEAREST_SLOPE))
