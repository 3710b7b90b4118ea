"""Convolutions over channels-last token grids ``(B, H, W, C)``."""

from __future__ import annotations

from torch import Tensor, nn


def image_conv(conv: nn.Module, x: Tensor) -> Tensor:
    """Apply an NCHW conv to ``(B, H, W, C)`` tokens through channels-last views (no copies)."""
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
