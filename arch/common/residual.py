"""The conv that closes a residual group (and the body) in SwinIR-style models."""

from __future__ import annotations

from torch import nn


def residual_conv(dim: int, kind: str) -> nn.Module:
    """``1conv``: one 3x3 conv; ``3conv``: a 3x3 -> 1x1 -> 3x3 bottleneck at ``dim // 4`` channels.

    Key layout matches the official checkpoints (``conv.weight`` or ``conv.0/2/4.weight``).
    """
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if kind == "3conv":
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, 1),
        )
    raise ValueError(f"resi_connection must be '1conv' or '3conv', not {kind!r}")
