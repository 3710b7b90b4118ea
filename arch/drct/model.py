"""DRCT: Dense-Residual-Connected Transformer for image super-resolution (Hsu et al., CVPRW 2024).

Shallow conv -> residual dense groups of Swin layers -> conv -> pixel-shuffle upsampling, with the
state-dict layout of the official code (``ming053l/DRCT``). Inputs of any size: sides are
reflect-padded at the bottom/right to a multiple of the window and the output is cropped, as the
official test pipeline does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..common.cache import attach_geometry_cache, cache_key, use_cache
from ..common.state import ignore_derived_buffers
from ..common.stream import norm_to, stream_dtype
from ..common.upsample import PixelShuffleUpsample
from ..common.windows import relative_position_index, shift_window_mask
from .blocks import RDG

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean the official model subtracts from RGB inputs
UPSAMPLE_FEATURES = 64


@dataclass(frozen=True)
class DRCTConfig:
    """Constructor hyperparameters (official names where they exist).

    Args:
        in_ch: image channels (input and output).
        embed_dim: token channels.
        num_heads: heads of the first Swin layer of each RDG (one entry per RDG).
        window_size: attention window side.
        mlp_ratio: MLP ratio of the first three layers of an RDG.
        gc: growth channels of the dense connections.
        scale: upscaling factor (1, 2^n or 3).
        img_range: input scaling applied after mean subtraction.
        qkv_bias: whether qkv projections have biases.
        patch_norm: whether tokens are layer-normed after the first conv.
        resi_connection: "1conv" (a 3x3 conv after the body) or "identity".
        shift: whether even layers shift windows (False only for a training size <= the window).
    """

    in_ch: int = 3
    embed_dim: int = 180
    num_heads: tuple[int, ...] = (6,) * 6
    window_size: int = 16
    mlp_ratio: float = 2.0
    gc: int = 32
    scale: int = 4
    img_range: float = 1.0
    qkv_bias: bool = True
    patch_norm: bool = True
    resi_connection: str = "1conv"
    shift: bool = True

    @property
    def depth(self) -> int:
        return len(self.num_heads)

    def as_dict(self) -> dict:
        return {**asdict(self), "num_heads": list(self.num_heads)}


class PatchEmbed(nn.Module):
    """Image ``(B, C, H, W)`` -> channels-last tokens ``(B, H, W, C)``, optionally layer-normed."""

    def __init__(self, dim: int, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: Tensor, stream_dtype: torch.dtype) -> Tensor:
        """Tokens in ``stream_dtype`` (the dtype the residual stream is carried in)."""
        tokens = x.permute(0, 2, 3, 1).to(stream_dtype)
        return tokens if self.norm is None else norm_to(self.norm, tokens, stream_dtype)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad the bottom/right of ``x`` to a multiple of ``multiple``: reflect, then replicate.

    Reflection is the official test pipeline's padding; it cannot pad more than ``side - 1``
    pixels, so tiny inputs get the rest by edge replication.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x
    refl_h, refl_w = min(pad_h, h - 1), min(pad_w, w - 1)
    if refl_h or refl_w:
        x = F.pad(x, (0, refl_w, 0, refl_h), mode="reflect")
    if pad_h > refl_h or pad_w > refl_w:
        x = F.pad(x, (0, pad_w - refl_w, 0, pad_h - refl_h), mode="replicate")
    return x


class DRCT(nn.Module):
    """The DRCT network (pixel-shuffle upsampler), built from a :class:`DRCTConfig`."""

    def __init__(self, config: DRCTConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.window_size = c.window_size
        self.scale = c.scale
        self.img_range = c.img_range
        mean = RGB_MEAN if c.in_ch == 3 else (0.0,) * c.in_ch
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(c.in_ch, c.embed_dim, 3, 1, 1)
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
        self.conv_last = nn.Conv2d(UPSAMPLE_FEATURES, c.in_ch, 3, 1, 1)

        # carry the residual stream in float32 under half-precision weights (see blocks.py); only
        # switched off to demonstrate the fp16 overflow it prevents
        self.fp32_stream = True
        ignore_derived_buffers(self)
        self._geometry_cache = attach_geometry_cache(self)

    # ---- geometry: built once per (device, dtype), shared by all layers and tiles ----------------

    def _build_position_biases(self, device: torch.device, dtype: torch.dtype) -> list[list[Tensor]]:
        index = relative_position_index(self.window_size, self.window_size, device)
        biases = [[swin.attn.position_bias(index) for swin in rdg.swins] for rdg in self.layers]
        return [[b.to(dtype).contiguous() for b in rdg] for rdg in biases]

    def _build_shift_masks(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        ws = self.window_size
        return shift_window_mask(2 * ws, 2 * ws, (ws, ws), (ws // 2, ws // 2), device, dtype).unsqueeze(1)

    def geometry(self, x: Tensor) -> tuple[list[list[Tensor]], Tensor]:
        """Per-layer position biases ``(heads, N, N)`` and the ``(4, 1, N, N)`` shift masks for ``x``.

        Neither depends on the input size (a shifted window is one of four kinds, whatever the
        image size), so one entry per device and dtype serves every tile.
        """
        dev, dt = x.device, x.dtype
        if not use_cache(self):
            return self._build_position_biases(dev, dt), self._build_shift_masks(dev, dt)
        cache = self._geometry_cache
        with torch.no_grad():  # cached tensors must not hold an autograd graph
            biases = cache.get(cache_key("drct_pos_bias", x), lambda: self._build_position_biases(dev, dt))
            masks = cache.get(cache_key("drct_shift_masks", x), lambda: self._build_shift_masks(dev, dt))
        return biases, masks

    # ---- forward ---------------------------------------------------------------------------------

    def forward_features(self, x: Tensor) -> Tensor:
        """Deep features of ``(B, embed_dim, H, W)`` (sides multiples of the window)."""
        pos_biases, shift_masks = self.geometry(x)
        # the residual stream runs in float32; the result comes back in the input's dtype
        stream = stream_dtype(x.dtype, self.fp32_stream)
        tokens = self.patch_embed(x, stream)
        for rdg, biases in zip(self.layers, pos_biases, strict=True):
            tokens = rdg(tokens, biases, shift_masks)
        return rearrange(norm_to(self.norm, tokens, x.dtype), "b h w c -> b c h w")

    def forward(self, x: Tensor) -> Tensor:
        """Upscale ``(B, in_ch, H, W)`` (any H, W) to ``(B, in_ch, H * scale, W * scale)``."""
        h, w = x.shape[-2:]
        # pad to whole windows the way the official test pipeline does
        x = pad_to_multiple(x, self.window_size)
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
