"""Patch embedding of SwinIR-style models: features to channels-last tokens, optionally normed."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .stream import norm_to


class PatchEmbed(nn.Module):
    """Image features ``(B, C, H, W)`` -> tokens ``(B, H, W, C)`` (key ``patch_embed.norm``).

    Args:
        dim: channels.
        norm: layer-norm the tokens (the official ``patch_norm``).
    """

    def __init__(self, dim: int, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: Tensor, stream: torch.dtype) -> Tensor:
        """Tokens in ``stream``, the dtype the residual stream is carried in (common/stream.py)."""
        tokens = x.permute(0, 2, 3, 1).to(stream)
        return tokens if self.norm is None else norm_to(self.norm, tokens, stream)
