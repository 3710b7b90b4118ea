"""DAT blocks: the dual aggregation transformer block and the residual group."""

from __future__ import annotations

from torch import Tensor, nn

from ..common.gated_mlp import GatedMLP
from ..common.grouped import TokenResidualGroup
from ..common.model import GeometryLookup
from ..common.stream import norm_to
from .attention import ChannelAttention, SpatialAttention


class Block(nn.Module):
    """Pre-norm transformer block: spatial or channel attention, then the spatial-gate FFN (SGFN).

    Args:
        dim: token channels.
        attn: the block's attention (:class:`SpatialAttention` or :class:`ChannelAttention`).
        ffn_hidden: hidden width of the gated FFN.
    """

    def __init__(self, dim: int, attn: SpatialAttention | ChannelAttention, ffn_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = GatedMLP(dim, ffn_hidden)

    def forward(self, x: Tensor, geometry: GeometryLookup) -> Tensor:
        """``x``: the residual stream (float32 under half weights, see common/stream.py)."""
        dtype = self.norm1.weight.dtype  # the branches run in the weights' dtype
        # the residual adds are fused into the attention's and the FFN's last products on the CPU
        x = self.attn(norm_to(self.norm1, x, dtype), geometry, residual=x)
        return self.ffn(norm_to(self.norm2, x, dtype), residual=x)


class ResidualGroup(TokenResidualGroup):
    """``depth`` blocks alternating spatial and channel attention, a conv, and a residual connection.

    Args:
        index: position of the group in the model (decides which spatial blocks are shifted).
        dim: token channels.
        depth: number of blocks.
        heads: attention heads.
        ffn_hidden: hidden width of each gated FFN.
        split_size: rectangle window ``(height, width)`` of the first spatial branch.
        resi_connection: ``"1conv"`` or ``"3conv"`` (the conv closing the group).
        qkv_bias: whether the qkv projections have biases.
        qk_scale: spatial attention's softmax temperature (None: ``head_dim ** -0.5``).
    """

    def __init__(
        self,
        index: int,
        dim: int,
        depth: int,
        heads: int,
        ffn_hidden: int,
        split_size: tuple[int, int],
        resi_connection: str,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
    ) -> None:
        blocks = []
        for j in range(depth):
            if j % 2 == 0:
                # every other spatial block is shifted, starting with the second in even groups
                shifted = (j // 2 + index) % 2 == 1
                attn: SpatialAttention | ChannelAttention = SpatialAttention(
                    dim, heads, split_size, shifted, qkv_bias, qk_scale
                )
            else:
                attn = ChannelAttention(dim, heads, qkv_bias)
            blocks.append(Block(dim, attn, ffn_hidden))
        super().__init__(blocks, dim, resi_connection)
