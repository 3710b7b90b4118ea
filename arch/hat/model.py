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
from torch import Tensor, nn

from ..common.image import pad_bottom_right
from ..common.model import attention_elements, token_elements, upsampler_elements
from ..common.position import relative_position_index
from ..common.swin import ShiftedWindows, swin_geometry
from ..common.swin_model import SwinSR
from ..errors import InputSizeError
from .blocks import RHAG
from .config import HATConfig
from .ocab import overlap_position_index


class HAT(SwinSR):
    """The HAT network (pixel-shuffle upsampler).

    Args:
        config: the hyperparameters (default: official HAT x4).
    """

    def __init__(self, config: HATConfig | None = None) -> None:
        super().__init__(config or HATConfig())
        c = self.config
        self.build_stem(c)
        if c.ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, c.img_size**2, c.embed_dim))
        self.layers = nn.ModuleList(
            RHAG(c, heads, depth) for heads, depth in zip(c.num_heads, c.depths, strict=True)
        )
        self.build_head(c, c.num_feat)

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

    def window_geometry(self, x: Tensor) -> tuple[list[tuple[list[Tensor], Tensor]], Tensor, ShiftedWindows]:
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

    def embed(self, x: Tensor, stream: torch.dtype) -> Tensor:
        """Tokens of the shallow features, plus the absolute position embedding with ``ape``."""
        tokens = self.patch_embed(x, stream)
        if self.config.ape:
            tokens = tokens + self.absolute_pos_embed.to(stream).view(1, *tokens.shape[1:])
        return tokens

    def pad(self, x: Tensor) -> Tensor:
        """Reflect-pad the bottom/right to whole windows (to the embedding's size with ``ape``)."""
        if not self.config.ape:
            return super().pad(x)
        size = self.config.img_size
        h, w = x.shape[-2:]
        if h > size or w > size:
            raise InputSizeError(
                f"this HAT model has an absolute position embedding trained for {size}x{size} inputs "
                f"and cannot run on {h}x{w}: upscale in {size}x{size} tiles (tile_size={size})."
            )
        return pad_bottom_right(x, size - h, size - w, "reflect", repeat=False)
