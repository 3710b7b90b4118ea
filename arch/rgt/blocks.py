"""RGT blocks: the transformer block with HAI (gated MLP: common/gated_mlp.py) and the residual group."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..common.gated_mlp import GatedMLP
from ..common.grouped import GatedBlock, TokenResidualGroup
from ..common.model import GeometryLookup
from ..common.stream import norm_to
from .attention import LSA, RGSA
from .config import RGTConfig


class Block(GatedBlock):
    """Pre-norm transformer block (L-SA or RG-SA, then the gated MLP, key ``mlp``) plus the HAI
    shortcut ``x + gamma * input``.

    Args:
        dim: token channels.
        attn: the block's attention (:class:`LSA` or :class:`RGSA`).
        hidden: hidden width of the gated MLP.
    """

    mlp_key = "mlp"
    attn: LSA | RGSA
    mlp: GatedMLP

    def __init__(self, dim: int, attn: LSA | RGSA, hidden: int) -> None:
        super().__init__(dim, attn, hidden)
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
        c: the hyperparameters.
        index: position of the group in the model (decides which L-SA blocks are shifted).
        depth: number of blocks.
        heads: attention heads.
    """

    def __init__(self, c: RGTConfig, index: int, depth: int, heads: int) -> None:
        dim, split = c.embed_dim, (int(c.split_size[0]), int(c.split_size[1]))
        blocks = []
        for j in range(depth):
            if j % 2 == 0:
                # every other L-SA is shifted, starting with the second in even groups
                attn: LSA | RGSA = LSA(dim, heads, split, (j // 2 + index) % 2 == 1, c.qkv_bias)
            else:
                attn = RGSA(dim, heads, c.c_ratio, c.qkv_bias)
            blocks.append(Block(dim, attn, c.mlp_hidden))
        super().__init__(blocks, dim, c.resi_connection)
