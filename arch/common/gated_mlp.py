"""The spatially gated MLP of RGT and DAT (DAT's "SGFN"): linear, GELU, spatial gate, linear."""

from __future__ import annotations

from torch import Tensor, nn

from .linear import Linear, linear, linear_add
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
        self.fc1 = Linear(dim, hidden)
        self.sg = SpatialGate(hidden // 2)
        self.fc2 = Linear(hidden // 2, dim)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``, plus ``residual`` when given (fused into fc2 on the CPU)."""
        # fc1's two halves as two products: each comes out contiguous (GELU fused on the CPU)
        half = self.fc1.out_features // 2
        w, b = self.fc1.weight, self.fc1.bias
        value, gate = (
            linear(x, w[rows], b[rows], gelu=True) for rows in (slice(None, half), slice(half, None))
        )
        gated = self.sg(value, gate)
        return (
            self.fc2(gated)
            if residual is None
            else linear_add(gated, self.fc2.weight, self.fc2.bias, residual)
        )
