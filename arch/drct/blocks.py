"""DRCT building blocks: the residual dense group (RDG) of Swin layers (``common/swin.py``).

Everything here works on channels-last token grids ``(B, H, W, C)`` whose sides are multiples of
the window. Position biases and shift masks are not built here: the model builds them once per
(device, dtype) and hands each layer the tensors it needs.

Precision: the residual stream (layer inputs/outputs, dense concatenations, growth features) is
carried in float32 whatever the weights' dtype. The stream is never normalised on its way through
an RDG (the 1x1 ``adjust`` convs read it raw), so its magnitude is set by training alone and can
exceed fp16's 65504. LayerNorms and the cheap 1x1 convs therefore run in float32; the attention
and MLP branches, which see only layer-normed inputs, run in the weights' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.linear import linear
from ..common.swin import ShiftedWindows, SwinLayer

# Growth features go through this LeakyReLU slope before they join the dense concatenation.
DENSE_SLOPE = 0.2
# An RDG adds its output to its input scaled by this factor (the official residual scaling).
RDG_RESIDUAL_SCALE = 0.2
SWINS_PER_RDG = 5


def dense_heads(base_heads: int, dim: int) -> int:
    """Heads of a Swin layer of width ``dim`` in an RDG: the official rule makes ``dim`` divisible."""
    return base_heads - dim % base_heads


class PointwiseConv(nn.Conv2d):
    """A 1x1 ``Conv2d`` (same keys and shapes) applied to channels-last tokens as a linear map.

    Runs in the dtype of its input (the float32 stream): it reads raw, unnormalised features.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, H, W, C_in)
        return linear(x, self.weight.flatten(1).to(x.dtype), self.bias.to(x.dtype))


class RDG(nn.Module):
    """Residual dense group: five Swin layers, each widened by the growth features of the ones before.

    Layer ``k`` (1-based) sees ``dim + (k - 1) * gc`` channels; ``adjust{k}`` squeezes its output to
    ``gc`` growth channels (``dim`` for the last), and the group output is ``0.2 * out + input``.
    Even layers shift their windows. Layers 4 and 5 use an MLP ratio of 1, as the official model.

    Args:
        dim: embedding channels.
        base_heads: heads of the first layer; wider layers use :func:`dense_heads`.
        window: window side.
        mlp_ratio: MLP ratio of layers 1-3.
        gc: growth channels.
        shift: whether even layers shift (False only for models trained on inputs <= the window).
        qkv_bias: whether qkv projections have biases.
    """

    def __init__(
        self,
        dim: int,
        base_heads: int,
        window: int,
        mlp_ratio: float,
        gc: int,
        shift: bool = True,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.swins: list[SwinLayer] = []
        self.adjusts: list[PointwiseConv] = []
        for k in range(1, SWINS_PER_RDG + 1):
            width = dim + (k - 1) * gc
            heads = dense_heads(base_heads, width)
            hidden = int(width * (mlp_ratio if k <= 3 else 1.0))
            swin = SwinLayer(width, heads, window, shift and k % 2 == 0, hidden, qkv_bias)
            adjust = PointwiseConv(width, gc if k < SWINS_PER_RDG else dim)
            self.add_module(f"swin{k}", swin)
            self.add_module(f"adjust{k}", adjust)
            self.swins.append(swin)
            self.adjusts.append(adjust)

    def forward(
        self, x: Tensor, pos_biases: list[Tensor], shift_masks: Tensor, order: ShiftedWindows
    ) -> Tensor:
        """Args:
        x: ``(B, H, W, dim)``.
        pos_biases: the five layers' ``(heads, N, N)`` position biases.
        shift_masks: ``(4, 1, N, N)`` shifted-window masks.
        order: the shifted windows of this ``H x W`` grid.
        """
        features = [x]
        for k, (swin, adjust) in enumerate(zip(self.swins, self.adjusts, strict=True)):
            # each layer sees the input and every growth feature so far
            dense = torch.cat(features, dim=-1) if k else x
            out = adjust(swin(dense, pos_biases[k], shift_masks, order))
            if k < SWINS_PER_RDG - 1:
                features.append(F.leaky_relu(out, DENSE_SLOPE))
        return out * RDG_RESIDUAL_SCALE + x
