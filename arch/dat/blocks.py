"""DAT blocks: the dual aggregation transformer block and the residual group."""

from __future__ import annotations

from torch import Tensor

from ..common.gated_mlp import GatedMLP
from ..common.grouped import GatedBlock, TokenResidualGroup
from ..common.model import GeometryLookup
from ..common.stream import norm_to
from .attention import ChannelAttention, SpatialAttention
from .config import DATConfig


class Block(GatedBlock):
    """Pre-norm transformer block: spatial or channel attention, then the spatial-gate FFN (SGFN,
    key ``ffn``). Arguments as :class:`~..common.grouped.GatedBlock`'s; ``attn`` is a
    :class:`SpatialAttention` or a :class:`ChannelAttention`.
    """

    mlp_key = "ffn"
    attn: SpatialAttention | ChannelAttention
    ffn: GatedMLP

    def forward(self, x: Tensor, geometry: GeometryLookup) -> Tensor:
        """``x``: the residual stream (float32 under half weights, see common/stream.py)."""
        dtype = self.norm1.weight.dtype  # the branches run in the weights' dtype
        # the residual adds are fused into the attention's and the FFN's last products on the CPU
        x = self.attn(norm_to(self.norm1, x, dtype), geometry, residual=x)
        return self.ffn(norm_to(self.norm2, x, dtype), residual=x)


class ResidualGroup(TokenResidualGroup):
    """``depth`` blocks alternating spatial and channel attention, a conv, and a residual connection.

    Args:
        c: the hyperparameters.
        index: position of the group in the model (decides which spatial blocks are shifted).
        depth: number of blocks.
        heads: attention heads.
    """

    def __init__(self, c: DATConfig, index: int, depth: int, heads: int) -> None:
        dim, split = c.embed_dim, (int(c.split_size[0]), int(c.split_size[1]))
        blocks = []
        for j in range(depth):
            if j % 2 == 0:
                # every other spatial block is shifted, starting with the second in even groups
                shifted = (j // 2 + index) % 2 == 1
                attn: SpatialAttention | ChannelAttention = SpatialAttention(
                    dim, heads, split, shifted, c.qkv_bias, c.qk_scale
                )
            else:
                attn = ChannelAttention(dim, heads, c.qkv_bias)
            blocks.append(Block(dim, attn, c.mlp_hidden))
        super().__init__(blocks, dim, c.resi_connection)
