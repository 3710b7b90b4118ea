"""The spatially gated MLP of RGT and DAT (DAT's "SGFN"): linear, GELU, spatial gate, linear."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .token_conv import image_conv


class SpatialGate(nn.Module):
    """Gate of the MLP: one half of the channels, normalised and depthwise-convolved, scales the other.

    Args:
        dim: channels of each half.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, value: Tensor, gate: Tensor) -> Tensor:
        return image_conv(self.conv, self.norm(gate)).mul_(value)


class GatedMLP(nn.Module):
    """Linear -> GELU -> spatial gate (halves the width) -> linear, on ``(B, H, W, C)`` tokens.

    Args:
        dim: token channels.
        hidden: width after the first linear layer (twice the gate's width).
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.sg = SpatialGate(hidden // 2)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = F.gelu(self.fc1(x)).chunk(2, dim=-1)
        return self.fc2(self.sg(value, gate))
