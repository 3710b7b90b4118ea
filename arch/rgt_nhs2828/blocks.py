"""Building blocks of the nhs2828 unofficial RGT, channels-last ``(B, H, W, C)`` throughout.

The re-implementation differs from the official RGT in ways that change the numbers, so its blocks
are its own (the official ones would not reproduce its checkpoints):

- local attention uses one fixed ``8 x 32`` window for all heads, never shifted (the official
  L-SA splits heads between ``8 x 32`` and ``32 x 8`` windows and shifts every other block);
- its MLP is two linears with no activation between them;
- RG-SA recursion runs a ``4 x 4`` depth-wise conv ``int(log_{s_r}(H / h))`` times (``h`` is a
  forward argument, 16 at test time), then a 3x3 depth-wise and a 1x1 conv, all without bias
  and without the official LayerNorm+GELU; there is no output projection.

State-dict keys follow the upstream module names (``QKV``, ``pos_bias.seq``, ``DWConv.conv`` ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from ..common.attention import attention
from ..common.position import lookup_position_bias, relative_offsets, relative_position_index
from ..common.stream import float32_forward
from ..common.tracing import example_value
from ..common.windows import window_partition, window_reverse, windowed_attention
from .config import WINDOW


def recursion_steps(height: int, target: int, stride: int) -> int:
    """How many strided reductions RG-SA applies: upstream's ``int(math.log(H / h, s_r))``, kept
    verbatim (float rounding included) so the step count matches its checkpoints' behaviour. An
    exported graph's symbolic height counts as its example value: its size range
    (:meth:`~.model.NHS2828RGT.export_size_range`) holds the heights with that many steps."""
    return int(math.log(example_value(height) / target, stride))


def reduced_length(size: int, steps: int, kernel: int, stride: int) -> int:
    """Length of one axis after ``steps`` unpadded ``kernel``/``stride`` convs (0 if it vanishes)."""
    for _ in range(steps):
        if size < kernel:
            return 0
        size = (size - kernel) // stride + 1
    return size


def conv_input(tokens: Tensor) -> Tensor:
    """NCHW view of channels-last tokens ``(B, H, W, C)`` for a conv, in the memory layout that suits
    the dtype: contiguous NCHW in fp32 (oneDNN's channels-last fp32 convs are ~7x less accurate on
    CPU), channels-last memory in half precision (CPU NCHW fp16 convs take a ~50x slower path)."""
    x = tokens.permute(0, 3, 1, 2)
    return x.contiguous() if tokens.dtype == torch.float32 else x


class NamedConv(nn.Module):
    """A bias-free conv stored under ``.conv`` (upstream's DepthWise/PointWise wrappers)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class PositionBiasMLP(nn.Module):
    """Dynamic position bias: (dy, dx) -> per-head logit bias, as ``seq`` = 3x(Linear, LN, ReLU) + Linear.

    Args:
        pos_dim: hidden width (upstream ``C // 16``).
        num_heads: attention heads (output width).
    """

    def __init__(self, pos_dim: int, num_heads: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 2
        for _ in range(3):
            layers += [nn.Linear(width, pos_dim), nn.LayerNorm(pos_dim), nn.ReLU()]
            width = pos_dim
        layers.append(nn.Linear(pos_dim, num_heads))
        self.seq = nn.Sequential(*layers)

    def forward(self, offsets: Tensor) -> Tensor:
        """``(T, 2)`` offsets -> ``(T, heads)`` biases, computed in float32 whatever the weights' dtype
        (the table is tiny and built once; half precision would round the biases for nothing)."""
        return float32_forward(self.seq, offsets)


class PlainMLP(nn.Module):
    """Upstream's MLP: two linears, no activation in between (kept: its weights were trained so)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(dim, hidden), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class RectWindowAttention(nn.Module):
    """Self-attention in fixed, non-overlapping ``8 x 32`` windows with a dynamic position bias.

    Args:
        dim: channels.
        num_heads: attention heads.
        pos_dim: hidden width of the position-bias MLP.
    """

    def __init__(self, dim: int, num_heads: int, pos_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.QKV = nn.Linear(dim, 3 * dim)
        self.final_projection = nn.Linear(dim, dim)
        self.pos_bias = PositionBiasMLP(pos_dim, num_heads)

    def position_bias(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The learned bias for one window, ``(1, heads, N, N)``, built on ``device`` in ``dtype``."""
        wh, ww = WINDOW
        on = self.pos_bias.seq[0].weight.device
        table = self.pos_bias(relative_offsets(wh, ww, on))
        bias = lookup_position_bias(table, relative_position_index(wh, ww, on)).unsqueeze(0)
        return bias.to(device=device, dtype=dtype).contiguous()

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        """Args: x ``(B, H, W, C)`` with H, W multiples of the window; bias from :meth:`position_bias`."""
        h, w = x.shape[1:3]
        # Tokens of each window, then per-head q, k, v.
        qkv = self.QKV(window_partition(x, *WINDOW))
        q, k, v = rearrange(qkv, "n t (three h d) -> three n h t d", three=3, h=self.num_heads)
        out = windowed_attention(q, k, v, bias, self.scale)
        # Heads back to channels, project, windows back to the image.
        out = self.final_projection(rearrange(out, "n h t d -> n t (h d)"))
        return window_reverse(out, *WINDOW, h, w)


class RecursiveAttention(nn.Module):
    """RG-SA: every token attends to a recursively down-sampled summary of the whole image.

    Args:
        dim: channels.
        reduced_dim: channels of queries/keys (upstream ``int(C * cr)``).
        num_heads: attention heads.
        kernel: kernel of the recursive depth-wise conv (4 upstream).
        stride: its stride ``s_r``.
        target: the forward argument ``h``: recursion stops at ``int(log_{s_r}(H / h))`` steps.
    """

    def __init__(
        self, dim: int, reduced_dim: int, num_heads: int, kernel: int, stride: int, target: int
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.stride = stride
        self.target = target
        self.scale = (reduced_dim // num_heads) ** -0.5
        self.Q = nn.Linear(dim, reduced_dim)
        self.K = nn.Linear(reduced_dim, reduced_dim)
        self.V = nn.Linear(reduced_dim, dim)
        self.DWConv = NamedConv(dim, dim, kernel, stride, groups=dim)
        self.DWConv2 = NamedConv(dim, dim, 3, padding=1, groups=dim)
        self.PWConv = NamedConv(dim, reduced_dim, 1)

    def summary(self, x: Tensor) -> Tensor:
        """Recursively reduced tokens ``(B, h*w, reduced_dim)`` of ``x`` ``(B, H, W, C)``."""
        r = conv_input(x)
        for _ in range(recursion_steps(x.shape[1], self.target, self.stride)):
            r = self.DWConv(r)
        r = self.PWConv(self.DWConv2(r))
        return rearrange(r, "b c y x -> b (y x) c")

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[1:3]
        q = rearrange(self.Q(x), "b y x (h d) -> b h (y x) d", h=self.num_heads)
        s = self.summary(x)
        k = rearrange(self.K(s), "b t (h d) -> b h t d", h=self.num_heads)
        v = rearrange(self.V(s), "b t (h d) -> b h t d", h=self.num_heads)
        out = attention(q, k, v, scale=self.scale)
        return rearrange(out, "b h (y x) d -> b y x (h d)", y=h, x=w)


class LocalBlock(nn.Module):
    """Pre-norm transformer block around :class:`RectWindowAttention` (upstream ``L_SA_block``)."""

    def __init__(self, dim: int, num_heads: int, pos_dim: int, mlp_hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.lsa = RectWindowAttention(dim, num_heads, pos_dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = PlainMLP(dim, mlp_hidden)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        x = x + self.lsa(self.ln1(x), bias)
        return x + self.mlp(self.ln2(x))


class RecursiveBlock(nn.Module):
    """Pre-norm transformer block around :class:`RecursiveAttention` (upstream ``RG_SA_block``)."""

    def __init__(self, dim: int, mlp_hidden: int, attention: RecursiveAttention) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.rg_sa = attention
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = PlainMLP(dim, mlp_hidden)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.rg_sa(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class AdaptiveSkip(nn.Module):
    """Hybrid adaptive integration: a learned per-channel scale of a block's input (``alpha``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.alpha.view(-1)  # channels-last


class ResidualGroup(nn.Module):
    """Alternating local / recursive blocks, each with an adaptive skip, then a 3x3 conv + residual.

    Args:
        dim: channels.
        depth: number of (local, recursive) block pairs.
        make_local: builds one :class:`LocalBlock`.
        make_recursive: builds one :class:`RecursiveBlock`.
    """

    def __init__(self, dim: int, depth: int, make_local, make_recursive) -> None:
        super().__init__()
        self.HAIs = nn.ModuleList(AdaptiveSkip(dim) for _ in range(2 * depth))
        self.LSAs = nn.ModuleList(make_local() for _ in range(depth))
        self.RGSAs = nn.ModuleList(make_recursive() for _ in range(depth))
        self.final_conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: Tensor, biases: Sequence[Tensor]) -> Tensor:
        """Args: x ``(B, H, W, C)``; biases: one window bias per local block."""
        y = x
        for i, (local, recursive) in enumerate(zip(self.LSAs, self.RGSAs, strict=True)):
            y = local(y, biases[i]) + self.HAIs[2 * i](y)
            y = recursive(y) + self.HAIs[2 * i + 1](y)
        y = self.final_conv(conv_input(y)).permute(0, 2, 3, 1)
        return y + x
