"""RGT blocks: the transformer block with HAI (gated MLP: common/gated_mlp.py) and the residual group."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..common.gated_mlp import GatedMLP
from ..common.grouped import TokenResidualGroup
from ..common.model import GeometryLookup
from ..common.stream import norm_to
from .attention import LSA, RGSA


class Block(nn.Module):
    """Pre-norm transformer block (L-SA or RG-SA) plus the HAI shortcut ``x + gamma * input``.

    Args:
        dim: token channels.
        attn: the block's attention (:class:`LSA` or :class:`RGSA`).
        mlp_hidden: hidden width of the gated MLP.
    """

    def __init__(self, dim: int, attn: LSA | RGSA, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = GatedMLP(dim, mlp_hidden)
        self.gamma = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, geometry: GeometryLookup) -> Tensor:
        """``x``: the residual stream (float32 under half weights, see common/stream.py)."""
        dtype = self.norm1.weight.dtype  # the branches run in the weights' dtype
        normed = norm_to(self.norm1, x, dtype)
        # L-SA serves its window biases from the model's geometry cache; RG-SA needs none
        y = x + (self.attn(normed, geometry) if isinstance(self.attn, LSA) else self.attn(normed))
        y = y + self.mlp(norm_to(self.norm2, y, dtype))
        # HAI: hybrid adaptive integration of the block input
        return torch.addcmul(y, x, self.gamma.to(x.dtype))


class ResidualGroup(TokenResidualGroup):
    """``depth`` blocks alternating L-SA and RG-SA, a conv, and a residual connection.

    Args:
        index: position of the group in the model (decides which L-SA blocks are shifted).
        dim: token channels.
        depth: number of blocks.
        heads: attention heads.
        mlp_hidden: hidden width of each gated MLP.
        split_size: rectangle window ``(height, width)`` of the first L-SA branch.
        c_ratio: RG-SA channel ratio.
        resi_connection: ``"1conv"`` or ``"3conv"`` (the conv closing the group).
        qkv_bias: whether the attention projections have biases.
    """

    def __init__(
        self,
        index: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_hidden: int,
        split_size: tuple[int, int],
        c_ratio: float,
        resi_connection: str,
        qkv_bias: bool = True,
    ) -> None:
        blocks = []
        for j in range(depth):
            if j % 2 == 0:
                # every other L-SA is shifted, starting with the second in even groups
                attn: LSA | RGSA = LSA(dim, heads, split_size, (j // 2 + index) % 2 == 1, qkv_bias)
            else:
                attn = RGSA(dim, heads, c_ratio, qkv_bias)
            blocks.append(Block(dim, attn, mlp_hidden))
        super().__init__(blocks, dim, resi_connection)
