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

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..common.embed import PatchEmbed
from ..common.image import image_mean, pad_to_multiple
from ..common.model import SRModel, attention_elements, token_elements, upsampler_elements
from ..common.position import relative_position_index
from ..common.residual import residual_conv
from ..common.state import ignore_derived_buffers
from ..common.stream import norm_to, stream_dtype
from ..common.swin import ShiftedWindows, swin_geometry
from ..common.upsample import PixelShuffleDirect, PixelShuffleUpsample
from .blocks import RSTB
from .config import SwinIRConfig

# LeakyReLU slope between the nearest-upsampling convs (the pixel-shuffle path keeps torch's 0.01).
NEAREST_SLOPE = 0.2


class SwinIR(SRModel):
    """The SwinIR network, every task's reconstruction.

    Args:
        config: the hyperparameters (default: classical SwinIR-M x4).

    Attributes:
        fp32_stream: carry the residual stream in float32 under half-precision weights (see
            blocks.py); only switched off to demonstrate the fp16 overflow it prevents.
    """

    def __init__(self, config: SwinIRConfig | None = None) -> None:
        super().__init__(config or SwinIRConfig())
        c = self.config
        self.window_size = c.window_size
        self.img_range = c.img_range
        self.upsampler = c.upsampler
        self.fp32_stream = True
        self.register_buffer("mean", image_mean(c.in_chans), persistent=False)

        conv_first = nn.Conv2d(c.in_chans * c.unshuffle**2, c.embed_dim, 3, 1, 1)
        self.conv_first = (
            nn.Sequential(nn.PixelUnshuffle(c.unshuffle), conv_first)
            if c.unshuffle_in_conv_first
            else conv_first
        )
        self.patch_embed = PatchEmbed(c.embed_dim, c.patch_norm)
        layer_args = dict(window=c.window_size, qkv_bias=c.qkv_bias, shift=c.shift)
        self.layers = nn.ModuleList(
            RSTB(
                depth,
                c.embed_dim,
                c.resi_connection,
                heads=heads,
                mlp_hidden=int(c.embed_dim * c.mlp_ratio),
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

    # ---- geometry: built once per (device, dtype), shared by all layers and tiles ----------------

    def window_geometry(self, x: Tensor) -> tuple[list[list[Tensor]], Tensor, ShiftedWindows]:
        """Per-layer position biases ``(heads, N, N)``, the ``(4, 1, N, N)`` shift masks and the
        shifted windows for features ``x`` (:func:`~..common.swin.swin_geometry`).

        Biases and masks do not depend on the input size (a shifted window is one of four kinds
        whatever the image size), so one entry per device and dtype serves every tile.
        """
        ws = self.window_size

        def biases() -> list[list[Tensor]]:
            index = relative_position_index(ws, ws, x.device)
            return [
                [b.attn.position_bias(index).to(x.dtype).contiguous() for b in rstb.residual_group.blocks]
                for rstb in self.layers
            ]

        return swin_geometry(self, x, ws, biases)

    # ---- forward ---------------------------------------------------------------------------------

    def forward_features(self, x: Tensor) -> Tensor:
        """Deep features of ``(B, embed_dim, H, W)`` (sides multiples of the window)."""
        pos_biases, shift_masks, order = self.window_geometry(x)
        # the residual stream runs in float32 under half weights; the result comes back in x's dtype
        tokens = self.patch_embed(x, stream_dtype(x.dtype, self.fp32_stream))
        for rstb, biases in zip(self.layers, pos_biases, strict=True):
            tokens = rstb(tokens, biases, shift_masks, order, x.dtype)
        return rearrange(norm_to(self.norm, tokens, x.dtype), "b h w c -> b c h w")

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

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_chans, H, W)`` (any H, W) -> ``(B, in_chans, H * scale, W * scale)``, unclamped."""
        c = self.config
        h, w = x.shape[-2:]
        # whole windows after the unshuffle, padded the way the official test pipeline does
        x = pad_to_multiple(x, self.preferred_tile_multiple(), "reflect", repeat=False)
        mean = self.mean.to(x.dtype)
        # channels-last images: the body's token layout is then a free view, and CPU convs
        # (fp16 above all) take much faster kernels
        x = ((x - mean) * self.img_range).contiguous(memory_format=torch.channels_last)
        if c.unshuffle > 1 and not c.unshuffle_in_conv_first:
            x = F.pixel_unshuffle(x, c.unshuffle)
        # shallow features, deep features with a long skip, then the reconstruction
        shallow = self.conv_first(x)
        deep = self.conv_after_body(self.forward_features(shallow)) + shallow
        out = self.reconstruct(deep, x) / self.img_range + mean
        return out[..., : h * self.scale, : w * self.scale].contiguous()
