"""SwinIR's residual Swin transformer block (RSTB): Swin layers, a conv, and a skip around both.

Keys follow the official checkpoints: ``layers.N.residual_group.blocks.M.*`` for the layers and
``layers.N.conv`` (``1conv``) or ``layers.N.conv.{0,2,4}`` (``3conv``) for the closing conv.

Precision: the residual stream runs through the whole body un-normalised, and the closing conv
of every group reads it raw, so the stream of a trained SwinIR grows from group to group (by
orders of magnitude in the released models: the reason their fp16 outputs elsewhere are black).
Under half-precision weights it is carried in float32, and the closing conv is computed on the
stream scaled by a power of two (``common/residual.py``), so nothing leaves fp16's range.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..common.residual import residual_conv, residual_conv_from_stream
from ..common.swin import ShiftedWindows, SwinLayer


class SwinLayers(nn.Module):
    """The Swin layers of one group (key ``residual_group.blocks``); odd layers shift their windows.

    Args:
        depth: layers.
        dim: token channels.
        heads: attention heads.
        window: window side.
        mlp_hidden: hidden width of the MLPs.
        qkv_bias: whether qkv projections have biases.
        shift: whether odd layers shift (False only for models trained on inputs <= the window).
    """

    def __init__(
        self, depth: int, dim: int, heads: int, window: int, mlp_hidden: int, qkv_bias: bool, shift: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinLayer(dim, heads, window, shift and i % 2 == 1, mlp_hidden, qkv_bias) for i in range(depth)
        )

    def forward(
        self, x: Tensor, pos_biases: list[Tensor], shift_masks: Tensor, order: ShiftedWindows
    ) -> Tensor:
        for block, bias in zip(self.blocks, pos_biases, strict=True):
            x = block(x, bias, shift_masks, order)
        return x


class RSTB(nn.Module):
    """Residual Swin transformer block: ``x + conv(layers(x))``.

    Args:
        depth: Swin layers.
        dim: token channels.
        resi_connection: ``1conv`` or ``3conv``.
        layer_args: the remaining :class:`SwinLayers` arguments.
    """

    def __init__(self, depth: int, dim: int, resi_connection: str, **layer_args) -> None:
        super().__init__()
        self.residual_group = SwinLayers(depth, dim, **layer_args)
        self.conv = residual_conv(dim, resi_connection)

    def forward(
        self,
        x: Tensor,
        pos_biases: list[Tensor],
        shift_masks: Tensor,
        order: ShiftedWindows,
    ) -> Tensor:
        """Args:
        x: ``(B, H, W, C)`` residual stream (float32, or the weights' dtype).
        pos_biases: each layer's ``(heads, N, N)`` position bias.
        shift_masks: ``(4, 1, N, N)`` shifted-window masks.
        order: the shifted windows of this ``H x W`` grid.
        """
        y = self.residual_group(x, pos_biases, shift_masks, order)
        # the conv sees the raw stream as an image (a (B, C, H, W) view of channels-last tokens)
        # and runs in the weights' dtype
        dtype = next(self.conv.parameters()).dtype
        out = residual_conv_from_stream(self.conv, y.permute(0, 3, 1, 2), dtype)
        return x + out.permute(0, 2, 3, 1)
