"""The network skeleton SwinIR, DRCT and HAT share (SwinIR's; the key layout is the official one).

Shallow conv (``conv_first``) on the normalised image, channels-last tokens (``patch_embed``),
residual groups of Swin layers (``layers``, the family's own), ``norm``, ``conv_after_body`` with
the shallow features added back, then the reconstruction: pixel-shuffle (``conv_before_upsample``,
``upsample``, ``conv_last``) unless the family has its own. Inputs of any size: the bottom/right
are reflect-padded to whole windows, as the official test pipelines do, and the output is cropped.
Each group is called as ``group(tokens, biases, shift_masks, order)`` with its entry of the
model's :meth:`SwinSR.window_geometry`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from .config import ModelConfig
from .embed import PatchEmbed
from .image import image_mean, pad_to_multiple
from .model import SRModel
from .position import relative_position_index
from .state import ignore_derived_buffers
from .stream import norm_to, stream_dtype
from .swin import ShiftedWindows, SwinLayer, swin_geometry
from .upsample import PixelShuffleUpsample


class SwinSR(SRModel):
    """Base of the SwinIR, DRCT and HAT root modules: subclasses call :meth:`build_stem`, build
    their ``layers``, then :meth:`build_head` (or their own reconstruction).

    Attributes:
        fp32_stream: carry the residual stream in float32 under half-precision weights
            (common/stream.py); only switched off to demonstrate the fp16 overflow it prevents.
    """

    def build_stem(self, c: ModelConfig, conv_first: nn.Module | None = None) -> None:
        """The modules before the groups, in the official registration order.

        Args:
            c: the config (``window_size``, ``img_range``, ``in_chans``, ``embed_dim``, ``patch_norm``).
            conv_first: the shallow conv, where it is not a 3x3 conv from ``in_chans`` to ``embed_dim``.
        """
        self.window_size = c.window_size
        self.img_range = c.img_range
        self.fp32_stream = True
        self.register_buffer("mean", image_mean(c.in_chans), persistent=False)
        if conv_first is None:
            conv_first = nn.Conv2d(c.in_chans, c.embed_dim, 3, 1, 1)
        self.conv_first = conv_first
        self.patch_embed = PatchEmbed(c.embed_dim, c.patch_norm)

    def build_head(self, c: ModelConfig, features: int) -> None:
        """The modules after the groups of a pixel-shuffle model whose body conv is one 3x3 conv
        (``resi_connection="1conv"``) or none (``"identity"``); saved derived buffers are then
        ignored on load.

        Args:
            c: the config (``embed_dim``, ``resi_connection``, ``scale``, ``in_chans``).
            features: channels of the reconstruction.
        """
        self.norm = nn.LayerNorm(c.embed_dim)
        if c.resi_connection == "1conv":
            self.conv_after_body: nn.Module = nn.Conv2d(c.embed_dim, c.embed_dim, 3, 1, 1)
        elif c.resi_connection == "identity":
            self.conv_after_body = nn.Identity()
        else:
            raise ValueError(f"resi_connection must be '1conv' or 'identity', not {c.resi_connection!r}")
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(c.embed_dim, features, 3, 1, 1), nn.LeakyReLU(inplace=True)
        )
        self.upsample = PixelShuffleUpsample(c.scale, features)
        self.conv_last = nn.Conv2d(features, c.in_chans, 3, 1, 1)
        ignore_derived_buffers(self)

    # ---- what families change -------------------------------------------------------------------

    def swin_layers(self, group: nn.Module) -> Iterable[SwinLayer]:
        """The Swin layers of one of ``layers``, in the order the group reads their biases."""
        raise NotImplementedError

    def window_geometry(self, x: Tensor) -> tuple[list[Any], Tensor, ShiftedWindows]:
        """Per group, each Swin layer's ``(heads, N, N)`` position bias; the ``(4, 1, N, N)`` shift
        masks; the shifted windows of features ``x`` (:func:`~.swin.swin_geometry`).

        Biases and masks do not depend on the input size (a shifted window is one of four kinds
        whatever the image size), so one entry per device and dtype serves every tile.
        """
        ws = self.window_size

        def biases() -> list[list[Tensor]]:
            index = relative_position_index(ws, ws, x.device)
            return [
                [layer.attn.position_bias(index).to(x.dtype).contiguous() for layer in self.swin_layers(g)]
                for g in self.layers
            ]

        return swin_geometry(self, x, ws, biases)

    def pad(self, x: Tensor) -> Tensor:
        """Reflect-pad the bottom/right of an image to whole :meth:`preferred_tile_multiple` tiles
        (an edge too short to reflect that far is completed by repeating it)."""
        return pad_to_multiple(x, self.preferred_tile_multiple(), "reflect", repeat=False)

    def shallow_input(self, image: Tensor) -> Tensor:
        """The normalised, padded image as ``conv_first`` reads it."""
        return image

    def embed(self, x: Tensor, stream: torch.dtype) -> Tensor:
        """Tokens ``(B, H, W, C)`` of the shallow features, in the residual stream's dtype."""
        return self.patch_embed(x, stream)

    def reconstruct(self, deep: Tensor, image: Tensor) -> Tensor:
        """Deep features (plus the shallow skip) -> the normalised output image (``image``: what
        ``conv_first`` read)."""
        return self.conv_last(self.upsample(self.conv_before_upsample(deep)))

    # ---- forward ---------------------------------------------------------------------------------

    def forward_features(self, x: Tensor) -> Tensor:
        """Deep features of ``(B, embed_dim, H, W)`` (sides multiples of the window)."""
        group_biases, shift_masks, order = self.window_geometry(x)
        # the residual stream runs in float32 under half weights; the result comes back in x's dtype
        tokens = self.embed(x, stream_dtype(x.dtype, self.fp32_stream))
        for group, biases in zip(self.layers, group_biases, strict=True):
            tokens = group(tokens, biases, shift_masks, order)
        return rearrange(norm_to(self.norm, tokens, x.dtype), "b h w c -> b c h w")

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_chans, H, W)`` (any H, W) -> ``(B, in_chans, H * scale, W * scale)``, unclamped."""
        h, w = x.shape[-2:]
        x = self.pad(x)
        mean = self.mean.to(x.dtype)
        # channels-last images: the body's token layout is then a free view, and CPU convs
        # (fp16 above all) take much faster kernels
        image = self.shallow_input(
            ((x - mean) * self.img_range).contiguous(memory_format=torch.channels_last)
        )
        # shallow features, deep features with a long skip, then the reconstruction
        shallow = self.conv_first(image)
        deep = self.conv_after_body(self.forward_features(shallow)) + shallow
        out = self.reconstruct(deep, image) / self.img_range + mean
        return out[..., : h * self.scale, : w * self.scale].contiguous()
