"""DRCT: Dense-Residual-Connected Transformer for image super-resolution (Hsu et al., CVPRW 2024).

Shallow conv -> residual dense groups of Swin layers -> conv -> pixel-shuffle upsampling, with the
state-dict layout of the official code (``ming053l/DRCT``). Inputs of any size: sides are
reflect-padded at the bottom/right to a multiple of the window and the output is cropped, as the
official test pipeline does.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..common.model import UPSAMPLE_FEATURES, attention_elements, token_elements, upsampler_elements
from ..common.swin import SwinLayer
from ..common.swin_model import SwinSR
from .blocks import RDG, SWINS_PER_RDG
from .config import DRCTConfig


class DRCT(SwinSR):
    """The DRCT network (pixel-shuffle upsampler).

    Args:
        config: the hyperparameters (default: official DRCT x4).
    """

    def __init__(self, config: DRCTConfig | None = None) -> None:
        super().__init__(config or DRCTConfig())
        c = self.config
        self.build_stem(c)
        self.layers = nn.ModuleList(
            RDG(c.embed_dim, heads, c.window_size, c.mlp_ratio, c.gc, c.shift, c.qkv_bias)
            for heads in c.num_heads
        )
        self.build_head(c, UPSAMPLE_FEATURES)

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

    # ---- the layers whose position biases the model's geometry holds -----------------------------

    def swin_layers(self, group: nn.Module) -> Iterable[SwinLayer]:
        return group.swins
